"""``exact``: the answer equals the reference text after the configured normalisation.

>>> v = ExactVerifier(case_sensitive=False)
>>> [o.status for o in v.score([_s(" Paris\\n", "paris"), _s("Lyon", "Paris")])]
['correct', 'incorrect']

The whole normalised text is compared at once, so output with only a prefix of the expected
lines, or with extra lines, does not match (open-r1's ``code_reward`` compared lines with
``zip`` and passed a prefix). :func:`outputs_match` is the same comparison for program
output.
"""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass
from typing import Literal

from trustgrpo.verifiers.base import Sample
from trustgrpo.verifiers.core import BaseVerifier, Check, abstain, correct, incorrect, wrong_answer
from trustgrpo.verifiers.extract import DEFAULT_STOPS, Extract, extract_answer

_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class ExactParams:
    """Parameters of ``exact``."""

    extract: Extract = "full"
    """Where the answer is: ``full`` (the whole completion), ``last_line``, ``boxed``,
    ``answer_tag``, ``last_number`` or ``first_number``."""
    case_sensitive: bool = True
    """Compare letter case; false folds case (``str.casefold``)."""
    strip: bool = True
    """Remove whitespace at both ends, and at the end of every line."""
    collapse_whitespace: bool = False
    """Turn every run of whitespace (newlines included) into one space."""
    strip_punctuation: bool = False
    """Remove ASCII punctuation at both ends (``"Paris."`` matches ``"Paris"``)."""
    unicode: Literal["none", "NFC", "NFKC"] = "NFKC"
    """Unicode normalisation applied to both sides."""
    stop: tuple[str, ...] = DEFAULT_STOPS
    """The completion is cut at the first of these strings before extraction."""


def normalise(text: str, p: ExactParams) -> str:
    """``text`` normalised as ``p`` says (also applied to the reference).

    >>> normalise("  A  b \\r\\n", ExactParams(case_sensitive=False, collapse_whitespace=True))
    'a b'
    """
    t = text.replace("\r\n", "\n").replace("\r", "\n")
    if p.unicode != "none":
        t = unicodedata.normalize(p.unicode, t)
    if p.strip:
        t = "\n".join(line.rstrip() for line in t.split("\n")).strip()
    if p.collapse_whitespace:
        t = _WS.sub(" ", t).strip()
    if p.strip_punctuation:
        t = t.strip(string.punctuation + " ")
    if not p.case_sensitive:
        t = t.casefold()
    return t


def outputs_match(actual: str, expected: str, params: ExactParams | None = None) -> bool:
    """Whole-text comparison of program output: every line, and no more lines.

    >>> outputs_match("1\\n2\\n", "1\\n2\\n3\\n"), outputs_match("1\\n2\\n3 \\n", "1\\n2\\n3")
    (False, True)
    """
    p = params or ExactParams()
    return normalise(actual, p) == normalise(expected, p)


class ExactVerifier(BaseVerifier[ExactParams]):
    """The normalised answer equals the normalised reference."""

    type = "exact"
    Params = ExactParams
    code_modules = ("trustgrpo.verifiers.extract",)

    def check(self, sample: Sample) -> Check:
        if sample.reference is None:
            return abstain("no reference answer")
        text, reason = extract_answer(sample.completion, self.params.extract, self.params.stop)
        if text is None:
            return incorrect(reason)
        got = normalise(text, self.params)
        if not got:
            return incorrect("empty answer")
        if got == normalise(sample.reference, self.params):
            return correct(extracted=text[:200])
        return incorrect("different text", extracted=text[:200])

    def gold_completion(self, sample: Sample) -> str | None:
        """The reference written where this verifier looks for the answer."""
        ref = sample.reference
        if ref is None:
            return None
        if self.params.extract == "boxed":
            return f"\\boxed{{{ref}}}"
        if self.params.extract == "answer_tag":
            return f"<answer>{ref}</answer>"
        return ref

    def canaries(self, sample: Sample) -> list[tuple[str, str]]:
        """Empty, wrong, the reference followed by another answer, and a prefix of it."""
        out = super().canaries(sample)
        ref = sample.reference
        if not ref or not ref.strip():
            return out
        bad = wrong_answer(ref)
        out.append(("wrong answer", self.gold_completion(Sample("", 0, 0, "", "", bad)) or bad))
        mode = self.params.extract
        if mode in ("full", "last_line"):
            out.append(("several answers", f"{ref}\n{bad}"))
        elif mode == "boxed":
            out.append(("several answers", f"\\boxed{{{bad}}} \\boxed{{{ref}}}"))
        elif mode == "answer_tag":
            out.append(("several answers", f"<answer>{bad}</answer><answer>{ref}</answer>"))
        lines = ref.strip().splitlines()
        if len(lines) > 1 and self.params.extract == "full":
            out.append(("prefix of the lines", "\n".join(lines[:-1])))
        return out


def _s(completion: str, reference: str) -> Sample:
    """A one-off sample (for the examples)."""
    return Sample("p", 0, 0, "", completion, reference)


__all__ = ["ExactParams", "ExactVerifier", "normalise", "outputs_match"]
