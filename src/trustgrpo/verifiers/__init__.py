"""Verifiers: deterministic, versioned programs that score samples.

A verifier has a ``name``, a ``version`` (a hash of its code and parameters) and a batch
``score(samples) -> list[Outcome]`` returning one outcome per sample, in order. A run's
verifiers are combined by :func:`build_reward` (weights, gates, shaping, failure policy);
see :mod:`.compose` for the exact formula, :mod:`.registry` for the types a run file can
name, and :mod:`.selftest` for the start-of-run self-test and the determinism check.
"""

from __future__ import annotations

from trustgrpo.verifiers.base import (
    STATUSES,
    UNSCORED,
    Outcome,
    Sample,
    Verifier,
    safe_score,
    version_of,
)
from trustgrpo.verifiers.compose import Component, FailurePolicy, Reward, RewardResult, build_reward
from trustgrpo.verifiers.core import BaseVerifier, Check
from trustgrpo.verifiers.exact import ExactVerifier
from trustgrpo.verifiers.function import FunctionVerifier
from trustgrpo.verifiers.json_schema import JsonSchemaVerifier
from trustgrpo.verifiers.length import LengthPenalty
from trustgrpo.verifiers.math_answer import MathVerifier
from trustgrpo.verifiers.numeric import NumericVerifier
from trustgrpo.verifiers.regex import FormatVerifier, RegexVerifier
from trustgrpo.verifiers.registry import build_verifier, check_specs, known_types, register
from trustgrpo.verifiers.selftest import (
    Mismatch,
    SelfTestReport,
    gold_samples,
    register_canary,
)

__all__ = [
    "STATUSES",
    "UNSCORED",
    "BaseVerifier",
    "Check",
    "Component",
    "ExactVerifier",
    "FailurePolicy",
    "FormatVerifier",
    "FunctionVerifier",
    "JsonSchemaVerifier",
    "LengthPenalty",
    "MathVerifier",
    "Mismatch",
    "NumericVerifier",
    "Outcome",
    "RegexVerifier",
    "Reward",
    "RewardResult",
    "Sample",
    "SelfTestReport",
    "Verifier",
    "build_reward",
    "build_verifier",
    "check_specs",
    "gold_samples",
    "known_types",
    "register",
    "register_canary",
    "safe_score",
    "version_of",
]
