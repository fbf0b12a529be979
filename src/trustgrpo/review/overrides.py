"""Corrected rewards flowing back into training.

When a person corrects a reward on the review page, the app writes an ``override`` event
``{event, reviewer, reward, reason}`` naming the reviewed ``reward`` event. From then on the
same completion for the same prompt gets the corrected reward: :class:`Overrides` keys every
override by the reviewed event's ``(prompt_blob, completion_blob)``, the content hashes
``sha256:<hex>`` of the two texts, and the trainer applies it in its verify phase::

    overrides = Overrides.from_ledger(trainer.ledger)   # any LedgerReader
    ...
    overrides.refresh()                                  # overrides written since
    rewards, applied = overrides.apply(samples, rewards)

A later override of the same (prompt, completion) replaces an earlier one. A corrected
reward of ``None`` masks the sample (NaN), like a verifier error. Overrides that do not name
a reward event are skipped and listed in :attr:`Overrides.skipped`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from trustgrpo.errors import TrustGRPOError
from trustgrpo.ledger.events import BLOB_PREFIX
from trustgrpo.ledger.reader import LedgerReader


class _Sample(Protocol):
    prompt: str
    completion: str


def blob_hash(text: str) -> str:
    """``sha256:<hex>`` of a text's UTF-8 bytes: the key the ledger stores it under.

    >>> blob_hash("")
    'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    """
    return BLOB_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Correction:
    """One override in force."""

    reward: float | None
    """The corrected reward (None: masked)."""
    override: int
    """Leaf index of the ``override`` event."""
    event: int
    """Leaf index of the reward event that was reviewed."""
    reviewer: str
    reason: str


class Overrides:
    """Corrected rewards by (prompt hash, completion hash), read from a ledger."""

    def __init__(self, reader: LedgerReader) -> None:
        self.reader = reader
        self._cursor = 0
        self._table: dict[tuple[str, str], Correction] = {}
        self.skipped: list[tuple[int, str]] = []
        """``(override event index, why)`` for overrides that could not be applied."""

    @classmethod
    def from_ledger(cls, reader: LedgerReader) -> Overrides:
        """Every override recorded in ``reader``'s ledger so far."""
        out = cls(reader)
        out.refresh()
        return out

    def refresh(self) -> int:
        """Read overrides appended since the last call; returns how many were added.

        Only ``override`` rows are read (one query), so a refresh per training step is cheap.
        """
        added = 0
        store = self.reader.store
        end = store.size()
        rows = list(store.iter_events(self._cursor, end, kind="override"))
        self._cursor = end
        for idx, _, _, data in rows:
            try:
                body = json.loads(bytes(data))["body"]
                target = int(body["event"])
                reward = body.get("reward")
                if reward is not None and (
                    isinstance(reward, bool) or not isinstance(reward, (int, float))
                ):
                    raise ValueError(f"reward: expected a number or null, found {reward!r}")
                reviewed = self.reader.get_event(target)
            except (TrustGRPOError, ValueError, KeyError, TypeError) as e:
                self.skipped.append((idx, f"not an override of a reward event: {e}"))
                continue
            rb = reviewed.body
            if reviewed.kind != "reward" or not isinstance(rb.get("completion_blob"), str):
                self.skipped.append((idx, f"event {target} is a {reviewed.kind!r} event"))
                continue
            key = (str(rb.get("prompt_blob")), str(rb["completion_blob"]))
            self._table[key] = Correction(
                None if reward is None else float(reward),
                idx,
                target,
                str(body.get("reviewer", "")),
                str(body.get("reason", "")),
            )
            added += 1
        return added

    def __len__(self) -> int:
        return len(self._table)

    def lookup(self, prompt: str, completion: str) -> Correction | None:
        """The override in force for this completion of this prompt, or None."""
        if not self._table:
            return None
        return self._table.get((blob_hash(prompt), blob_hash(completion)))

    def apply(
        self, samples: Sequence[_Sample], rewards: Sequence[float] | np.ndarray
    ) -> tuple[np.ndarray, list[int]]:
        """``(rewards with overrides applied, indices of the samples overridden)``.

        ``rewards`` is not changed; the result is a new float64 array (NaN: masked).
        """
        out = np.array(rewards, dtype=np.float64, copy=True)
        if len(out) != len(samples):
            raise ValueError(f"rewards: expected {len(samples)} values, found {len(out)}")
        applied: list[int] = []
        if not self._table:
            return out, applied
        prompt_hashes: dict[int, str] = {}
        for i, s in enumerate(samples):
            ph = prompt_hashes.get(id(s.prompt))  # a group shares its prompt object
            if ph is None:
                ph = prompt_hashes[id(s.prompt)] = blob_hash(s.prompt)
            c = self._table.get((ph, blob_hash(s.completion)))
            if c is not None:
                out[i] = np.nan if c.reward is None else c.reward
                applied.append(i)
        return out, applied

    def corrections(self) -> list[Correction]:
        """The overrides in force."""
        return list(self._table.values())


def describe(c: Correction) -> dict[str, Any]:
    """A correction as JSON (for a reward event's ``override`` field or a message)."""
    return {
        "override": c.override,
        "event": c.event,
        "reward": c.reward,
        "reviewer": c.reviewer,
        "reason": c.reason,
    }
