"""``regex`` and ``format``: the completion has the required shape.

``format`` is ``regex`` with the ``think_answer`` preset: exactly one ``<think>…</think>``
followed by exactly one non-empty ``<answer>…</answer>``, and nothing else around them.

>>> v = FormatVerifier()
>>> good, bad = _s("<think>2+2</think><answer>4</answer>"), _s("<answer>4</answer>")
>>> [o.status for o in v.score([good, bad])]
['correct', 'incorrect']

With ``partial_credit``, a completion that fails the pattern still earns
``partial_max × (parts present exactly once) / (number of parts)`` (status ``incorrect``);
the parts default to the preset's four tags. Matching runs under a per-sample time limit, so
a pattern with catastrophic backtracking gives a ``timeout`` outcome, not a stuck run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from trustgrpo.verifiers.base import Sample
from trustgrpo.verifiers.core import BaseVerifier, Check, correct, incorrect
from trustgrpo.verifiers.extract import DEFAULT_STOPS, cut_at_stop
from trustgrpo.verifiers.params import ge, gt

_NOT_TAG = r"(?:(?!</?{t}>).)"
PRESETS: dict[str, dict[str, Any]] = {
    "think_answer": {
        "pattern": (
            r"\s*<think>" + _NOT_TAG.format(t="think") + r"*</think>\s*"
            r"<answer>(?:(?!</?answer>)\s)*(?:(?!</?answer>)\S)"
            + _NOT_TAG.format(t="answer")
            + r"*</answer>\s*"
        ),
        "parts": ("<think>", "</think>", "<answer>", "</answer>"),
        "gold_template": "<think>\nThe answer follows.\n</think>\n<answer>{answer}</answer>",
    },
}


@dataclass(frozen=True)
class RegexParams:
    """Parameters of ``regex`` / ``format``."""

    pattern: str = ""
    """A Python regular expression (required unless ``preset`` is set)."""
    preset: Literal["none", "think_answer"] = "none"
    """A built-in pattern: ``think_answer`` is ``<think>…</think><answer>…</answer>``."""
    mode: Literal["fullmatch", "search"] = "fullmatch"
    """``fullmatch``: the whole completion must match; ``search``: anywhere in it."""
    ignore_case: bool = False
    """Match letters in either case."""
    dotall: bool = True
    """``.`` also matches newlines."""
    multiline: bool = False
    """``^`` and ``$`` match at every line."""
    partial_credit: bool = False
    """A completion failing the pattern earns credit for each of ``parts`` it has once."""
    parts: tuple[str, ...] = ()
    """Patterns counted for partial credit (default: the preset's tags)."""
    partial_max: float = field(default=0.5, metadata=ge(0))
    """Score of a completion that has every part but fails the pattern (< 1)."""
    gold_template: str = ""
    """How a correct completion is written, with ``{answer}`` for the reference (self-test);
    empty uses the preset's, or skips the gold self-test for a custom pattern."""
    timeout_s: float = field(default=1.0, metadata=gt(0))
    """Per-sample time limit for matching."""
    stop: tuple[str, ...] = DEFAULT_STOPS
    """The completion is cut at the first of these strings before matching."""

    def problems(self) -> list[str]:
        out = []
        if not self.pattern and self.preset == "none":
            out.append("pattern: missing (a regular expression, or set preset)")
        if self.pattern and self.preset != "none":
            out.append("pattern: expected either pattern or preset, not both")
        for key, pat in [("pattern", self.pattern), *(("parts", p) for p in self.parts)]:
            try:
                re.compile(pat)
            except re.error as e:
                out.append(f"{key}: not a valid regular expression {pat!r}: {e}")
        if self.partial_max >= 1:
            out.append(
                "partial_max: expected a number < 1 (less than a full match), "
                f"got {self.partial_max}"
            )
        if self.partial_credit and not self.parts and self.preset == "none":
            out.append("parts: expected at least one pattern when partial_credit is on")
        if self.gold_template:
            try:
                self.gold_template.format(answer="x")
            except (KeyError, IndexError, ValueError) as e:
                out.append(f"gold_template: expected text with only {{answer}} in braces ({e})")
        return out


class RegexVerifier(BaseVerifier[RegexParams]):
    """The completion matches a regular expression."""

    type = "regex"
    Params = RegexParams
    code_modules = ("trustgrpo.verifiers.extract",)

    def setup(self) -> None:
        p = self.params
        preset = PRESETS.get(p.preset, {})
        flags = (re.IGNORECASE if p.ignore_case else 0) | (re.DOTALL if p.dotall else 0)
        flags |= re.MULTILINE if p.multiline else 0
        self._re = re.compile(p.pattern or preset["pattern"], flags)
        self._parts = [re.compile(x, flags) for x in (p.parts or preset.get("parts", ()))]
        self._gold = p.gold_template or preset.get("gold_template", "")

    def check(self, sample: Sample) -> Check:
        text = cut_at_stop(sample.completion, self.params.stop)
        m = self._re.fullmatch(text) if self.params.mode == "fullmatch" else self._re.search(text)
        if m is not None:
            return correct()
        if self.params.partial_credit and self._parts:
            once = [len(r.findall(text)) == 1 for r in self._parts]
            score = self.params.partial_max * sum(once) / len(once)
            return Check("incorrect", score, {"reason": "pattern not matched", "parts": once})
        return incorrect("pattern not matched")

    def gold_completion(self, sample: Sample) -> str | None:
        """The gold template with the reference (or ``42`` when there is none)."""
        if not self._gold:
            return None
        return self._gold.format(answer=sample.reference if sample.reference else "42")

    def canaries(self, sample: Sample) -> list[tuple[str, str]]:
        """Empty; with a preset also tags without content, twice, or out of order."""
        out = [("empty", ""), ("whitespace", " \n")]
        if self.params.preset == "think_answer":
            ref = sample.reference or "42"
            out += [
                ("format only", "<think></think><answer></answer>"),
                ("several answers", f"<think>a</think><answer>1</answer><answer>{ref}</answer>"),
                ("answer without thinking", f"<answer>{ref}</answer>"),
                ("text after the answer", f"<think>a</think><answer>{ref}</answer> or 7"),
            ]
        return out


class FormatVerifier(RegexVerifier):
    """``regex`` with ``preset = "think_answer"`` unless a pattern is given."""

    type = "format"

    @classmethod
    def fill_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """``preset = "think_answer"`` unless a pattern or preset is given."""
        out = dict(params)
        if "pattern" not in out and "preset" not in out:
            out["preset"] = "think_answer"
        return out


def _s(completion: str) -> Sample:
    """A one-off sample (for the examples)."""
    return Sample("p", 0, 0, "", completion, None)


__all__ = ["PRESETS", "FormatVerifier", "RegexParams", "RegexVerifier"]
