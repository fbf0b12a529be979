"""What detectors read: one training step's reward events as arrays (:class:`StepData`).

The same object is built online from the trainer's :class:`~trustgrpo.callbacks.StepBatch`
and offline from a recorded ledger's ``reward`` events, so every detector that needs nothing
but the record runs identically in both places.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, overload

import numpy as np

from trustgrpo.monitors._alert import Ref
from trustgrpo.monitors._stats import GroupLayout, group_layout
from trustgrpo.verifiers.base import STATUSES

#: Verifier types that check form, not correctness (component dominance's default split).
FORMAT_TYPES = frozenset({"regex", "format", "json_schema", "length", "overlong"})
STATUS_CODE = {s: i for i, s in enumerate(STATUSES)}
CORRECT, INCORRECT, ABSTAIN, ERROR, TIMEOUT = (STATUS_CODE[s] for s in STATUSES)


@dataclass(frozen=True)
class ComponentInfo:
    """One verifier component of the run's reward."""

    name: str
    role: str
    """``reward``, ``gate`` or ``shaping``."""
    type: str = ""
    """Registered type (``numeric``...) or ``package.module:function``."""
    id: str = ""
    """``name@version``."""

    @property
    def judges(self) -> bool:
        """True for components that say whether an answer is right (not shaping)."""
        return self.role != "shaping"


def components_of(reward: Any) -> tuple[ComponentInfo, ...]:
    """The :class:`ComponentInfo` of a live :class:`~trustgrpo.verifiers.Reward`."""
    return tuple(ComponentInfo(c.name, c.role, c.type, c.id) for c in reward.components)


def components_from_inventory(inventory: Sequence[Mapping[str, Any]]) -> tuple[ComponentInfo, ...]:
    """The components recorded in a ``run_started`` event's verifier inventory."""
    return tuple(
        ComponentInfo(
            str(v.get("name", "")),
            str(v.get("role", "reward")),
            str(v.get("type", "")),
            str(v.get("id", "")),
        )
        for v in inventory
    )


@dataclass
class StepData:
    """One step's samples, group by group, as arrays (n samples, k components)."""

    step: int
    components: tuple[ComponentInfo, ...]
    group: np.ndarray
    """Group id per sample (int)."""
    lengths: np.ndarray
    """Generated tokens per sample (float)."""
    rewards: np.ndarray
    """Final reward per sample; NaN where masked."""
    scores: np.ndarray
    """(n, k) component scores; NaN where unscored."""
    status: np.ndarray
    """(n, k) status codes (index into ``STATUSES``)."""
    refs: Sequence[Ref]
    """Per sample, how to name its reward event in evidence."""
    completions: Sequence[str] = ()
    """Completion texts (empty offline when not needed, or redacted)."""
    metadata: Sequence[Mapping[str, Any]] = ()
    """Per sample, its data columns."""
    batch: Any = None
    """Online only: the trainer's ``StepBatch`` (live detectors re-score its samples)."""
    group_size: int = 0
    """The run's group size when known (0: read from ``group``)."""
    correct: np.ndarray = field(init=False)
    """Per sample: every judging (non-shaping) component said ``correct``."""

    def __post_init__(self) -> None:
        judging = [i for i, c in enumerate(self.components) if c.judges]
        if judging and self.status.size:
            self.correct = (self.status[:, judging] == CORRECT).all(axis=1)
        else:
            self.correct = np.zeros(len(self.rewards), dtype=bool)

    def __len__(self) -> int:
        return len(self.rewards)

    @cached_property
    def layout(self) -> GroupLayout:
        """The samples' places in a (groups × width) array (computed once per step, shared
        by the detectors)."""
        return group_layout(self.group, self.group_size)


class CoordRefs(Sequence[Ref]):
    """Per sample, its reward event's coordinates ``{"step", "group_id", "index"}``, made
    when asked for: evidence needs a few, and only on a step with an alert."""

    def __init__(self, step: int, group_ids: np.ndarray, indices: np.ndarray) -> None:
        self.step = step
        self.group_ids = group_ids
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    @overload
    def __getitem__(self, i: int) -> Ref: ...

    @overload
    def __getitem__(self, i: slice) -> list[Ref]: ...

    def __getitem__(self, i: int | slice) -> Ref | list[Ref]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        group_id, index = int(self.group_ids[i]), int(self.indices[i])
        return {"step": self.step, "group_id": group_id, "index": index}

    def __iter__(self) -> Iterator[Ref]:
        return (self[k] for k in range(len(self)))


def step_from_batch(batch: Any, components: tuple[ComponentInfo, ...]) -> StepData:
    """A :class:`StepData` from the trainer's :class:`~trustgrpo.callbacks.StepBatch`.

    Evidence refs are reward-event coordinates ``{"step", "group_id", "index"}``: the
    ledger numbers the events later, off the training thread.
    """
    samples = batch.samples
    n, k = len(samples), len(components)
    flat = [o for row in batch.outcomes for o in row]  # one outcome per component
    if len(flat) != n * k:
        raise ValueError(
            f"step {batch.step}: expected {k} verifier outcomes for each of {n} samples, "
            f"found {len(flat)} in all"
        )
    code = STATUS_CODE
    status = np.array([code[o.status] for o in flat], dtype=np.int8).reshape(n, k)
    scores = np.array(
        [math.nan if o.score is None else o.score for o in flat], dtype=np.float64
    ).reshape(n, k)
    step = int(batch.step)
    group = np.fromiter((s.group_id for s in samples), dtype=np.int64, count=n)
    index = np.fromiter((s.index for s in samples), dtype=np.int64, count=n)
    return StepData(
        step=step,
        components=components,
        group=group,
        lengths=np.fromiter((s.num_tokens for s in samples), dtype=np.float64, count=n),
        rewards=np.asarray(batch.rewards, dtype=np.float64),
        scores=scores,
        status=status,
        refs=CoordRefs(step, group, index),
        completions=[s.completion for s in samples],
        metadata=[s.metadata for s in samples],
        batch=batch,
        group_size=int(getattr(batch, "group_size", 0) or 0),
    )


def step_from_events(
    step: int,
    events: Sequence[Any],
    components: tuple[ComponentInfo, ...],
    reader: Any = None,
    *,
    texts: bool = False,
    metadata: bool = False,
    cache: dict[str, Any] | None = None,
) -> StepData:
    """A :class:`StepData` from one step's ``reward`` events (evidence refs: event indices).

    ``texts``/``metadata``: also read completions / data columns from the blob table
    (``reader``); redacted blobs read as empty. ``cache`` memoises metadata blobs.
    """
    events = sorted(events, key=lambda e: (e.body["group_id"], e.body["index"]))
    n, k = len(events), len(components)
    scores = np.full((n, k), np.nan)
    status = np.zeros((n, k), dtype=np.int8)
    rewards = np.empty(n)
    code = STATUS_CODE
    for i, e in enumerate(events):
        r = e.body.get("reward")
        rewards[i] = np.nan if r is None else float(r)
        for j, o in enumerate(e.body.get("outcomes", [])[:k]):
            status[i, j] = code.get(o.get("status"), ERROR)
            if o.get("score") is not None:
                scores[i, j] = float(o["score"])
    completions: list[str] = []
    meta: list[Mapping[str, Any]] = []
    if texts and reader is not None:
        completions = [_text(reader, e.body.get("completion_blob")) for e in events]
    if metadata and reader is not None:
        memo = cache if cache is not None else {}
        for e in events:
            h = e.body.get("metadata_blob")
            if h not in memo:
                raw = _text(reader, h)
                memo[h] = json.loads(raw) if raw else {}
            meta.append(memo[h])
    return StepData(
        step=step,
        components=components,
        group=np.array([e.body["group_id"] for e in events], dtype=np.int64),
        lengths=np.array([e.body.get("num_tokens", 0) for e in events], dtype=np.float64),
        rewards=rewards,
        scores=scores,
        status=status,
        refs=[int(e.index) for e in events],
        completions=completions,
        metadata=meta,
    )


def _text(reader: Any, h: str | None) -> str:
    if not h:
        return ""
    try:
        return reader.get_text(h) or ""
    except Exception:  # a blob missing from a partial copy reads as redacted
        return ""
