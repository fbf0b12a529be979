"""trustgrpo: GRPO with verifiable, auditable rewards.

The public surface is listed in ``__all__`` (a test checks it); everything else is internal.
Names are imported lazily (PEP 562), so ``import trustgrpo`` does not load PyTorch: sandbox
and verifier worker processes start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Callback": "trustgrpo.callbacks",
    "CheckpointInfo": "trustgrpo.callbacks",
    "RunInfo": "trustgrpo.callbacks",
    "StepBatch": "trustgrpo.callbacks",
    "Config": "trustgrpo.config",
    "load": "trustgrpo.config",
    "ConfigError": "trustgrpo.errors",
    "DataError": "trustgrpo.errors",
    "LedgerError": "trustgrpo.errors",
    "SandboxError": "trustgrpo.errors",
    "TrainingStopped": "trustgrpo.errors",
    "TrustGRPOError": "trustgrpo.errors",
    "UserError": "trustgrpo.errors",
    "VerificationError": "trustgrpo.errors",
    "VerifierError": "trustgrpo.errors",
    "group_advantages": "trustgrpo.advantage",
    "grpo_loss": "trustgrpo.loss",
    "RunResult": "trustgrpo.trainer",
    "Trainer": "trustgrpo.trainer",
    "Outcome": "trustgrpo.verifiers.base",
    "Sample": "trustgrpo.verifiers.base",
    "Verifier": "trustgrpo.verifiers.base",
}

# spelled out for linters and readers; a test checks that it matches _EXPORTS
__all__ = [
    "Callback",
    "CheckpointInfo",
    "Config",
    "ConfigError",
    "DataError",
    "LedgerError",
    "Outcome",
    "RunInfo",
    "RunResult",
    "Sample",
    "SandboxError",
    "StepBatch",
    "Trainer",
    "TrainingStopped",
    "TrustGRPOError",
    "UserError",
    "VerificationError",
    "Verifier",
    "VerifierError",
    "__version__",
    "group_advantages",
    "grpo_loss",
    "load",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trustgrpo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # for type checkers and IDEs
    from trustgrpo.advantage import group_advantages
    from trustgrpo.callbacks import Callback, CheckpointInfo, RunInfo, StepBatch
    from trustgrpo.config import Config, load
    from trustgrpo.errors import (
        ConfigError,
        DataError,
        LedgerError,
        SandboxError,
        TrainingStopped,
        TrustGRPOError,
        UserError,
        VerificationError,
        VerifierError,
    )
    from trustgrpo.loss import grpo_loss
    from trustgrpo.trainer import RunResult, Trainer
    from trustgrpo.verifiers.base import Outcome, Sample, Verifier
