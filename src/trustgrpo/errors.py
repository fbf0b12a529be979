"""Exceptions raised by trustgrpo.

The hierarchy::

    TrustGRPOError                 base of everything raised on purpose
     ├── UserError                 bad input from a person; the CLI prints it and exits 2
     │    ├── ConfigError          a run file or --set override is wrong (lists every problem)
     │    └── DataError            a data file is missing, unreadable or lacks a column
     ├── VerifierError             a verifier could not be built or failed its self-test
     ├── SandboxError              the sandbox could not be set up
     ├── LedgerError               the ledger could not be opened or written
     │    └── VerificationError    the ledger does not verify (expected vs found)
     └── TrainingStopped           a callback or monitor stopped training (exit code 3)

A verifier failing on one sample is *not* an exception: it is an ``Outcome`` with status
``error`` or ``timeout``.
"""

from __future__ import annotations

from collections.abc import Sequence


class TrustGRPOError(Exception):
    """Base class of every exception trustgrpo raises on purpose."""


class UserError(TrustGRPOError):
    """Bad input from a person: reported without a traceback, exit code 2."""


class ConfigError(UserError):
    """One or more problems in a run file; each names its TOML path."""

    def __init__(self, problems: Sequence[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        head = f"{source}: " if source else ""
        if len(self.problems) == 1:
            msg = head + self.problems[0]
        else:
            msg = (
                head
                + f"{len(self.problems)} problems:\n"
                + "\n".join(f"  - {p}" for p in self.problems)
            )
        super().__init__(msg)


class DataError(UserError):
    """A data file is missing, unreadable, or lacks a required column."""


class VerifierError(TrustGRPOError):
    """A verifier could not be built, or failed its start-of-run self-test."""


class SandboxError(TrustGRPOError):
    """The sandbox could not be set up (not: the sandboxed program failed)."""


class LedgerError(TrustGRPOError):
    """The ledger could not be opened or written."""


class VerificationError(LedgerError):
    """The ledger, a proof or a checkpoint does not verify."""


class TrainingStopped(TrustGRPOError):
    """Training was stopped by a callback or a monitor's ``halt`` action."""

    exit_code = 3
