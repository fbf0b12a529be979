"""Checks of the verifiers themselves: the start-of-run self-test and the determinism check.

Self-test (before any training)
    For every component and every given sample (built from the dataset's gold answers):

    * **gold**: the verifier scores its own gold completion (``gold_completion(sample)``:
      the reference written where it looks for the answer) and must say ``correct``.
      Shaping components only have to produce a score. A verifier that cannot write a gold
      completion is listed as skipped.
    * **canaries**: known-bad completions (empty, a wrong answer, several answers with the
      right one among them, a format-only answer, an always-equal object for code: the
      verifier's own ``canaries(sample)`` plus those registered with
      :func:`register_canary`) must *not* be ``correct``, and must not crash the verifier
      (``error`` / ``timeout``).

    :meth:`SelfTestReport.raise_if_failed` stops the run with a readable report.

Determinism (:func:`rescore`)
    Score the same samples again and list every outcome whose status or score changed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from trustgrpo.errors import VerifierError
from trustgrpo.verifiers.base import Outcome, Sample, safe_score

CanaryFn = Callable[[Sample, Any], "str | None"]

#: Canaries registered per verifier type (or name): ``{type: [(label, make), ...]}``.
CANARIES: dict[str, list[tuple[str, CanaryFn]]] = {}


def register_canary(verifier_type: str, label: str, make: CanaryFn) -> None:
    """Add a known-bad completion for every verifier of ``verifier_type`` (or that name).

    ``make(sample, verifier)`` returns the completion for a self-test sample, or ``None`` to
    skip that sample.
    """
    CANARIES.setdefault(verifier_type, []).append((label, make))


_CALL = re.compile(r"^\s*([A-Za-z_]\w*)\s*\(")


def _entry_points(sample: Sample, verifier: Any) -> list[str]:
    """Function names a code sample's tests call (``entry_point``, ``fn_name``, ``call``)."""
    names = [sample.metadata.get("entry_point"), sample.metadata.get("fn_name")]
    raw = sample.metadata.get(getattr(verifier, "tests_column", "tests"))
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = None
    for case in raw if isinstance(raw, list) else []:
        m = _CALL.match(str(case.get("call", ""))) if isinstance(case, dict) else None
        if m:
            names.append(m.group(1))
    out = [n for n in dict.fromkeys(names) if isinstance(n, str) and n.isidentifier()]
    return out or ["solution"]


def _program(verifier: Any, body: str) -> str:
    """``body`` written where the code verifier looks for the program."""
    return body if getattr(verifier, "extract", "fenced") == "whole" else f"```python\n{body}```\n"


def _always_equal(sample: Sample, verifier: Any) -> str:
    """A program whose every answer claims to equal anything (evalplus compared ``out == exp``
    in the untrusted process, where this wins, even as ``42 == AlwaysEqual()``)."""
    body = (
        "class AlwaysEqual:\n"
        "    def __eq__(self, other): return True\n"
        "    def __ne__(self, other): return False\n"
        "    def __hash__(self): return 0\n"
        "    def __str__(self): return ''\n"
    )
    for name in _entry_points(sample, verifier):
        body += f"def {name}(*args, **kwargs):\n    return AlwaysEqual()\n"
    return _program(verifier, body + "print(AlwaysEqual())\n")


register_canary("code", "always-equal object", _always_equal)
register_canary(
    "code", "exit before the tests", lambda s, v: _program(v, "import sys\nsys.exit(0)\n")
)
register_canary("code", "empty program", lambda s, v: _program(v, "pass\n"))


@dataclass(frozen=True)
class SelfTestCase:
    """One self-test check: a completion, what the verifier said, and whether that is right."""

    component: str
    """``name@version`` of the verifier."""
    kind: Literal["gold", "canary"]
    label: str
    """``gold``, or the canary's label."""
    prompt_id: str
    completion: str
    outcome: Outcome
    passed: bool
    expected: str
    """What the verifier had to say (``correct``, ``not correct``, ``a score``)."""


@dataclass
class SelfTestReport:
    """The result of a self-test."""

    cases: list[SelfTestCase] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Checks that could not be run, and why."""

    @property
    def failures(self) -> list[SelfTestCase]:
        """The cases that failed."""
        return [c for c in self.cases if not c.passed]

    @property
    def ok(self) -> bool:
        """True when every case passed."""
        return not self.failures

    def summary(self, limit: int = 5) -> str:
        """A readable multi-line report: failures grouped by verifier and check."""
        fails = self.failures
        lines = [
            f"verifier self-test: {len(self.cases) - len(fails)}/{len(self.cases)} checks passed"
        ]
        groups: dict[tuple[str, str, str], list[SelfTestCase]] = {}
        for c in fails:
            groups.setdefault((c.component, c.kind, c.label), []).append(c)
        for (comp, kind, label), cases in groups.items():
            what = "gold answer" if kind == "gold" else f"canary '{label}'"
            lines.append(f"  {comp}: {what}: {len(cases)} failed (expected {cases[0].expected})")
            for c in cases[:limit]:
                o = c.outcome
                reason = o.details.get("reason") or o.details.get("error") or ""
                lines.append(
                    f"    - prompt {c.prompt_id}: completion {c.completion[:80]!r} -> "
                    f"{o.status} (score {o.score})" + (f": {str(reason)[:160]}" if reason else "")
                )
            if len(cases) > limit:
                lines.append(f"    ... and {len(cases) - limit} more")
        lines.extend(f"  skipped: {s}" for s in self.skipped)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """Counts, failures and skips (for the ledger)."""
        return {
            "checks": len(self.cases),
            "failed": len(self.failures),
            "failures": [
                {
                    "component": c.component,
                    "kind": c.kind,
                    "label": c.label,
                    "prompt_id": c.prompt_id,
                    "completion": c.completion[:200],
                    "outcome": c.outcome.to_json(),
                }
                for c in self.failures
            ],
            "skipped": list(self.skipped),
        }

    def raise_if_failed(self) -> None:
        """Raise :class:`VerifierError` with :meth:`summary` if any case failed."""
        if not self.ok:
            raise VerifierError(
                self.summary() + "\nFix the verifier (or its parameters) before training: a "
                "verifier that fails its self-test would train the model on wrong rewards."
            )


def _canaries_for(component: Any, sample: Sample) -> list[tuple[str, str]]:
    v = component.verifier
    own = getattr(v, "canaries", None)
    out = list(own(sample)) if callable(own) else [("empty", "")]
    for key in dict.fromkeys((component.type, v.name)):
        for label, make in CANARIES.get(key, []):
            text = make(sample, v)
            if text is not None:
                out.append((label, text))
    return out


def self_test(
    components: Sequence[Any], samples: Sequence[Sample], *, canaries: bool = True
) -> SelfTestReport:
    """Run the gold and canary checks of every component (see the module docstring)."""
    report = SelfTestReport()
    if not samples:
        report.skipped.append("no samples given: nothing was checked")
        return report
    for comp in components:
        v = comp.verifier
        vid = f"{v.name}@{v.version}"
        gold_fn = getattr(v, "gold_completion", None)
        gold: list[Sample] = []
        missing = 0
        for s in samples:
            text = gold_fn(s) if callable(gold_fn) else s.completion
            if text is None:
                missing += 1
            else:
                gold.append(replace(s, completion=text))
        if missing:
            report.skipped.append(f"{vid}: no gold completion for {missing} sample(s)")
        shaping = comp.role == "shaping"
        for s, o in zip(gold, safe_score(v, gold), strict=True):
            if shaping:
                ok, expected = o.score is not None, "a score"
            else:
                ok, expected = o.status == "correct", "correct"
            report.cases.append(
                SelfTestCase(vid, "gold", "gold", s.prompt_id, s.completion, o, ok, expected)
            )
        if not canaries or shaping:
            continue
        bad: list[tuple[str, Sample]] = [
            (label, replace(s, completion=text, num_tokens=0, truncated=False))
            for s in samples
            for label, text in _canaries_for(comp, s)
        ]
        outs = safe_score(v, [s for _, s in bad])
        for (label, s), o in zip(bad, outs, strict=True):
            ok = o.status in ("incorrect", "abstain")
            report.cases.append(
                SelfTestCase(vid, "canary", label, s.prompt_id, s.completion, o, ok, "not correct")
            )
    return report


@dataclass(frozen=True)
class Mismatch:
    """A sample whose outcome changed when it was scored again."""

    sample: int
    """Index of the sample in the batch."""
    prompt_id: str
    component: str
    """``name@version`` of the verifier."""
    before: Outcome
    after: Outcome

    def __str__(self) -> str:
        return (
            f"sample {self.sample} (prompt {self.prompt_id}), {self.component}: "
            f"{self.before.status} {self.before.score} -> {self.after.status} {self.after.score}"
        )


def rescore(
    components: Sequence[Any],
    samples: Sequence[Sample],
    outcomes: Sequence[Sequence[Outcome]],
) -> list[Mismatch]:
    """Score ``samples`` again with every component; list the outcomes that differ.

    ``outcomes`` is :attr:`RewardResult.outcomes` of the first scoring. A difference in
    status or score is a mismatch; timings and details are not compared.
    """
    if len(outcomes) != len(samples):
        raise ValueError(f"outcomes: expected {len(samples)} rows, got {len(outcomes)}")
    found = []
    for k, comp in enumerate(components):
        again = safe_score(comp.verifier, samples)
        for i, (s, o) in enumerate(zip(samples, again, strict=True)):
            before = outcomes[i][k]
            if before.status != o.status or before.score != o.score:
                found.append(Mismatch(i, s.prompt_id, before.verifier, before, o))
    found.sort(key=lambda m: (m.sample, m.component))
    return found


def gold_samples(
    prompts: Sequence[str],
    references: Sequence[str | None],
    metadata: Sequence[Any] | None = None,
    template: str = " {answer}",
    prompt_ids: Sequence[str] | None = None,
) -> list[Sample]:
    """Self-test samples whose completion is ``template`` filled with the reference.

    >>> [s.completion for s in gold_samples(["1+1="], ["2"])]
    [' 2']
    """
    if len(references) != len(prompts):
        raise ValueError(f"references: expected {len(prompts)} items, got {len(references)}")
    meta = list(metadata) if metadata is not None else [{} for _ in prompts]
    ids = list(prompt_ids) if prompt_ids is not None else [str(i) for i in range(len(prompts))]
    return [
        Sample(ids[i], i, 0, p, template.format(answer=r or ""), r, meta[i] or {})
        for i, (p, r) in enumerate(zip(prompts, references, strict=True))
    ]


__all__ = [
    "CANARIES",
    "Mismatch",
    "SelfTestCase",
    "SelfTestReport",
    "gold_samples",
    "register_canary",
    "rescore",
    "self_test",
]
