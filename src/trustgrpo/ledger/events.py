"""Ledger events: the leaf layout, the kinds, and the bodies the trainer writes.

Every leaf is the RFC 8785 canonical JSON of an envelope::

    {"body": {...}, "index": 17, "kind": "reward", "ts": 1762345678123}

``index`` is the leaf's position (so a moved event does not verify even before the tree is
checked), ``ts`` the time it was appended (Unix milliseconds). The leaf hash is
``SHA-256(0x00 || leaf)`` (RFC 9162 §2.1.1).

Blobs: large texts are stored once in the content-addressed blob table, keyed by
``sha256:<hex of SHA-256(content)>``. A body refers to a blob with a key ending in ``_blob``
(at any depth) whose value is that string (or null). The leaf commits to the hash only, so a
blob's content can be redacted and the ledger still verifies.

Bodies (``?`` marks a value that may be null):

``run_started`` / ``run_resumed``
    ``config`` (resolved run file), ``provenance`` (code version, package versions, model and
    data digests, verifier inventory with versions and source hashes, sandbox isolation),
    ``start_step``, ``ledger`` (``origin``, ``key``: the note verifier key, so the first leaf
    commits to the signing key).
``reward`` (one per sample)
    ``step``, ``prompt_id``, ``group_id``, ``index`` (in group), ``prompt_blob``,
    ``completion_blob``, ``reference_blob?``, ``metadata_blob?`` (canonical JSON of the
    sample's other data columns), ``num_tokens``, ``truncated``, ``outcomes`` (one
    ``Outcome.to_json()`` per verifier component: ``verifier`` name@version, ``status``,
    ``score?``, ``details``, ``duration_ms``), ``reward?`` (final reward; null when masked),
    ``advantage``, and ``override`` only when a reviewer's correction replaced the reward
    (``override`` event index, reviewed ``event``, ``reward``, ``reviewer``, ``reason``).
``step``
    ``step``, ``num_samples``, ``group_size``, ``metrics`` (reward aggregates, loss, KL,
    timings).
``alert``
    ``step``, ``detector``, ``check`` (which of the detector's tests fired), ``severity``
    (warn | review | pause | halt), ``statistic``, ``threshold``, ``evidence`` (event
    indices), ``action``, ``message``, ``details`` (the detector's numbers).
``feedback`` (a human label; see :mod:`trustgrpo.review.service`)
    ``event`` (index of the reward event), ``reviewer``, ``verdict`` (correct | incorrect |
    unsure), ``status`` (submitted | discarded), ``score?`` (the corrected reward),
    ``reason``, ``agrees?`` (verdict equals the verifiers'), ``suggestion`` (what the
    verifiers said), ``queue`` (why the item was queued). ``feedback_body`` builds the
    minimal form.
``override``
    ``event``, ``reviewer``, ``reward`` (the replacement), ``reason``.
``decision`` (a human's decision on an alert; a paused run waits for one)
    ``alert`` (index of the alert event), ``decision`` (continue | halt), ``reviewer``,
    ``reason``.
``checkpoint``
    ``step``, ``weights_sha256``, ``path`` (relative to the run directory).
``run_finished``
    ``result`` (steps, stopped early, final metrics).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trustgrpo.errors import LedgerError, VerificationError

KINDS: frozenset[str] = frozenset(
    {
        "run_started",
        "run_resumed",
        "reward",
        "step",
        "alert",
        "feedback",
        "override",
        "decision",
        "checkpoint",
        "run_finished",
    }
)
"""The event kinds a ledger accepts."""

BLOB_PREFIX = "sha256:"


def envelope(kind: str, body_json: bytes, index: int, ts_ms: int) -> bytes:
    """The canonical JSON leaf for a body that is already canonical JSON.

    The envelope's keys sort as ``body < index < kind < ts`` (RFC 8785 §3.2.3), and ``kind``
    is one of :data:`KINDS` (plain ASCII, no escaping), so splicing gives canonical bytes.
    """
    return b"".join(
        (
            b'{"body":',
            body_json,
            b',"index":',
            str(index).encode(),
            b',"kind":"',
            kind.encode(),
            b'","ts":',
            str(ts_ms).encode(),
            b"}",
        )
    )


@dataclass(frozen=True)
class Event:
    """One parsed ledger event."""

    index: int
    kind: str
    ts: int
    """Append time, Unix milliseconds."""
    body: dict[str, Any]
    data: bytes
    """The leaf: canonical JSON of the envelope."""
    leaf_hash: bytes

    def blob_refs(self) -> list[str]:
        """The blob hashes this event commits to."""
        return blob_refs(self.body)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            "ts": self.ts,
            "leaf_hash": self.leaf_hash.hex(),
            "body": self.body,
        }


def parse_event(idx: int, kind: str, lh: bytes, data: bytes) -> Event:
    """An :class:`Event` from a stored row; raises :class:`VerificationError` when the leaf is
    not an envelope matching its row."""
    try:
        env = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise VerificationError(f"event {idx}: expected a JSON envelope, found {e}") from None
    if not isinstance(env, dict) or set(env) != {"body", "index", "kind", "ts"}:
        keys = sorted(env) if isinstance(env, dict) else type(env).__name__
        raise VerificationError(
            f"event {idx}: envelope keys expected [body, index, kind, ts], found {keys}"
        )
    if env["index"] != idx:
        raise VerificationError(f"event {idx}: index expected {idx}, found {env['index']!r}")
    if env["kind"] != kind:
        raise VerificationError(f"event {idx}: kind expected {env['kind']!r}, found {kind!r}")
    if not isinstance(env["body"], dict) or type(env["ts"]) is not int:
        raise VerificationError(f"event {idx}: expected an object body and an integer ts")
    return Event(idx, kind, env["ts"], env["body"], data, lh)


def blob_refs(value: Any) -> list[str]:
    """The blob hashes a body commits to: ``sha256:`` values of ``*_blob`` keys, any depth."""
    out: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k.endswith("_blob") and isinstance(v, str) and v.startswith(BLOB_PREFIX):
                out.append(v)
            else:
                out.extend(blob_refs(v))
    elif isinstance(value, list):
        for v in value:
            out.extend(blob_refs(v))
    return out


def _float_or_none(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def reward_body(
    step: int,
    sample: Any,
    outcomes: Sequence[Any],
    reward: float,
    advantage: float,
    blobs: Mapping[str, str | None],
    override: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of a ``reward`` event (see the module docstring).

    ``sample`` is a :class:`~trustgrpo.verifiers.base.Sample`, ``outcomes`` its
    :class:`~trustgrpo.verifiers.base.Outcome` per verifier component, ``blobs`` the hashes
    of ``prompt``, ``completion``, ``reference`` and ``metadata`` (None when absent).
    ``override`` (only when a reviewer's correction replaced the verifiers' reward, so that
    ``reward`` is the corrected value): the ``override`` event's index, the reviewed
    ``event``, the corrected ``reward``, ``reviewer`` and ``reason``.
    """
    body: dict[str, Any] = {
        "step": step,
        "prompt_id": str(sample.prompt_id),
        "group_id": int(sample.group_id),
        "index": int(sample.index),
        "prompt_blob": blobs["prompt"],
        "completion_blob": blobs["completion"],
        "reference_blob": blobs.get("reference"),
        "metadata_blob": blobs.get("metadata"),
        "num_tokens": int(sample.num_tokens),
        "truncated": bool(sample.truncated),
        "outcomes": [o.to_json() for o in outcomes],
        "reward": _float_or_none(reward),
        "advantage": _float_or_none(advantage) or 0.0,
    }
    if override is not None:
        body["override"] = dict(override)
    return body


@dataclass(frozen=True)
class StepRewards:
    """One training step's results, as the trainer hands them to the ledger (copied: nothing
    here changes afterwards). :func:`reward_events` turns them into reward events."""

    step: int
    samples: Sequence[Any]
    """:class:`~trustgrpo.verifiers.base.Sample` per completion (a group shares its prompt
    and metadata objects)."""
    outcomes: Sequence[Sequence[Any]]
    rewards: Sequence[float]
    advantages: Sequence[float]
    overrides: Mapping[int, Mapping[str, Any]]
    """Sample index -> the reviewer's correction that replaced its reward."""


def reward_events(
    data: StepRewards, put: Callable[[str | bytes], str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The step's ``reward`` events; prompts, completions, references and metadata go to the
    blob table through ``put``. A builder for :meth:`~trustgrpo.ledger.Ledger.append_later`
    (as ``functools.partial(reward_events, data)``: it pickles, for a writer process)."""
    last_prompt: str | None = None
    prompt_hash = ""
    last_metadata: Mapping[str, Any] | None = None
    metadata_hash: str | None = None
    outcomes, rewards, advantages, overrides = (
        data.outcomes,
        data.rewards,
        data.advantages,
        data.overrides,
    )
    for i, sample in enumerate(data.samples):
        if sample.prompt is not last_prompt:  # a group shares its prompt object
            last_prompt, prompt_hash = sample.prompt, put(sample.prompt)
        if sample.metadata is not last_metadata:  # and, usually, its metadata
            last_metadata = sample.metadata
            metadata_hash = put(metadata_json(last_metadata)) if last_metadata else None
        blobs = {
            "prompt": prompt_hash,
            "completion": put(sample.completion),
            "reference": None if sample.reference is None else put(sample.reference),
            "metadata": metadata_hash,
        }
        body = reward_body(
            data.step, sample, outcomes[i], rewards[i], advantages[i], blobs, overrides.get(i)
        )
        yield "reward", body


def metadata_json(metadata: Mapping[str, Any]) -> bytes:
    """A sample's extra data columns as canonical JSON (what ``audit replay`` feeds back)."""
    from trustgrpo.ledger.canonical import canonical_json, to_jsonable

    try:
        return canonical_json(dict(metadata))
    except LedgerError:
        return canonical_json(to_jsonable(metadata))


def feedback_body(event: int, reviewer: str, verdict: str, reason: str = "") -> dict[str, Any]:
    """The body of a ``feedback`` event: a human's label on reward event ``event``."""
    return {"event": event, "reviewer": reviewer, "verdict": verdict, "reason": reason}


def override_body(event: int, reviewer: str, reward: float | None, reason: str) -> dict[str, Any]:
    """The body of an ``override`` event: a human replaces reward event ``event``'s reward."""
    return {"event": event, "reviewer": reviewer, "reward": reward, "reason": reason}
