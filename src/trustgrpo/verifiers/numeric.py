"""``numeric``: the answer is a number, compared with the reference within a tolerance.

>>> v = NumericVerifier(extract="last_number")
>>> [o.status for o in v.score([_s(" 42", "42"), _s("41<eos>", "42"), _s("no idea", "42")])]
['correct', 'incorrect', 'incorrect']

Values are compared exactly (as fractions) unless a tolerance is set: the answer is correct
when ``|answer - reference| <= tolerance + rel_tolerance * |reference|``. A completion with
no number is ``incorrect`` (the model failed to answer); a missing or non-numeric reference
is ``abstain`` (the verifier cannot judge).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trustgrpo.verifiers.base import Sample
from trustgrpo.verifiers.core import BaseVerifier, Check, abstain, correct, incorrect, wrong_answer
from trustgrpo.verifiers.extract import DEFAULT_STOPS, Extract, extract_answer, parse_number
from trustgrpo.verifiers.params import ge


@dataclass(frozen=True)
class NumericParams:
    """Parameters of ``numeric``."""

    extract: Extract = "last_number"
    """Where the answer is: ``last_number``, ``first_number``, ``full`` (the whole completion
    must be one number), ``boxed`` (the one ``\\boxed{}``) or ``answer_tag`` (the one
    ``<answer>...</answer>``)."""
    tolerance: float = field(default=0.0, metadata=ge(0))
    """Absolute tolerance; 0 compares exactly."""
    rel_tolerance: float = field(default=0.0, metadata=ge(0))
    """Tolerance relative to the reference's magnitude."""
    stop: tuple[str, ...] = DEFAULT_STOPS
    """The completion is cut at the first of these strings before extraction."""

    def problems(self) -> list[str]:
        if self.extract == "last_line":
            return [
                "extract: expected one of 'last_number', 'first_number', 'full', 'boxed', "
                "'answer_tag', got 'last_line'"
            ]
        return []


class NumericVerifier(BaseVerifier[NumericParams]):
    """The completion's number equals the reference number (within the tolerance)."""

    type = "numeric"
    Params = NumericParams
    code_modules = ("trustgrpo.verifiers.extract",)

    def check(self, sample: Sample) -> Check:
        p = self.params
        if sample.reference is None:
            return abstain("no reference answer")
        expected = parse_number(sample.reference)
        if expected is None:
            return abstain(f"reference is not a number: {sample.reference[:100]!r}")
        text, reason = extract_answer(sample.completion, p.extract, p.stop)
        if text is None:
            return incorrect(reason)
        value = parse_number(text)
        if value is None:
            return incorrect("answer is not a number", extracted=text[:200])
        if p.tolerance == 0 and p.rel_tolerance == 0:
            ok = value == expected
        else:
            ok = abs(value - expected) <= p.tolerance + p.rel_tolerance * abs(expected)
        if ok:
            return correct(extracted=text)
        return incorrect("wrong value", extracted=text[:200])

    def gold_completion(self, sample: Sample) -> str | None:
        """The reference written where this verifier looks for the answer."""
        ref = sample.reference
        if ref is None:
            return None
        mode = self.params.extract
        if mode == "boxed":
            return f"The answer is \\boxed{{{ref}}}."
        if mode == "answer_tag":
            return f"<answer>{ref}</answer>"
        return f" {ref}"

    def canaries(self, sample: Sample) -> list[tuple[str, str]]:
        """Empty, wrong, and several-answer completions (the right one among them)."""
        out = super().canaries(sample)
        ref = sample.reference
        if ref is None or parse_number(ref) is None:
            return out
        bad = wrong_answer(ref)
        mode = self.params.extract
        out.append(("wrong answer", self.gold_completion(Sample("", 0, 0, "", "", bad)) or bad))
        if mode == "last_number":
            out.append(("several answers", f"{ref} or {bad}"))
        elif mode == "first_number":
            out.append(("several answers", f"{bad} or {ref}"))
        elif mode == "full":
            out.append(("several answers", f"{ref} {bad}"))
        elif mode == "boxed":
            out.append(("several answers", f"\\boxed{{{bad}}} \\boxed{{{ref}}}"))
            out.append(("empty box", "\\boxed{}"))
        elif mode == "answer_tag":
            out.append(("several answers", f"<answer>{bad}</answer><answer>{ref}</answer>"))
            out.append(("empty tag", "<answer></answer>"))
        return out


def _s(completion: str, reference: str) -> Sample:
    """A one-off sample (for the examples)."""
    return Sample("p", 0, 0, "", completion, reference)


__all__ = ["NumericParams", "NumericVerifier"]
