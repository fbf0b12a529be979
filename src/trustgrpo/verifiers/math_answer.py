"""``math``: mathematical equivalence of the answer and the reference, by ``math-verify``.

``math-verify`` (Hugging Face) parses LaTeX and plain expressions into SymPy and compares
them: fractions and decimals (``\\frac{1}{2}`` = ``0.5``), ``\\boxed{}``, sets (order-free),
intervals (open and closed ends differ), equations and more.

>>> v = MathVerifier()
>>> [o.status for o in v.score([_s(r"so \\boxed{\\frac{1}{2}}", "0.5"), _s(r"\\boxed{2}", "0.5")])]
['correct', 'incorrect']

What this verifier adds around ``math-verify.parse`` / ``verify``:

1. **One timer per sample** (``timeout_s``, fractional seconds), covering parsing and
   comparison; an expired sample is a ``timeout`` outcome. math-verify's own whole-second
   timers are turned off (they share the same ``SIGALRM`` and, with its default
   ``raise_on_error=False``, would report a timeout as "not equal": an infrastructure
   failure scored as a wrong answer).
2. **The reference is parsed once** per process and reused by every sample of its group; a
   reference math-verify cannot parse is ``abstain`` (cannot judge), not a 0.
3. **Extraction**: ``auto`` lets math-verify find the answer (``\\boxed{}`` first, then other
   LaTeX, then plain expressions); ``boxed`` takes the one ``\\boxed{}`` and ``answer_tag``
   the one ``<answer>`` tag, refusing several different ones.
4. **The pool**: batches of ``pool_min_batch`` or more run in worker processes
   (:mod:`.pool`), with the results in sample order.

Exceptions raised inside math-verify's comparison are "not equal", which is its documented
behaviour (``raise_on_error=False``); exceptions anywhere else are ``error`` outcomes.
Needs ``math-verify`` (``pip install math-verify``); its version is part of this verifier's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from trustgrpo.verifiers.base import Sample
from trustgrpo.verifiers.core import (
    BaseVerifier,
    Check,
    VerifierTimeout,
    abstain,
    correct,
    incorrect,
    wrong_answer,
)
from trustgrpo.verifiers.extract import DEFAULT_STOPS, boxed_contents, cut_at_stop, tag_contents
from trustgrpo.verifiers.params import ge, gt


@dataclass(frozen=True)
class MathParams:
    """Parameters of ``math``."""

    extract: Literal["auto", "boxed", "answer_tag"] = "auto"
    """Where the answer is: found by math-verify (``auto``), the one ``\\boxed{}``, or the
    one ``<answer>...</answer>``."""
    timeout_s: float = field(default=5.0, metadata=gt(0))
    """Per-sample time limit for parsing and comparing; past it the outcome is ``timeout``."""
    float_rounding: int = field(default=6, metadata=ge(0))
    """Decimal places floats are rounded to before comparison (math-verify)."""
    numeric_precision: int = field(default=15, metadata=ge(1))
    """Significant digits of numeric evaluation (math-verify)."""
    strict: bool = True
    """math-verify's strict mode: variables matter, and a set is not a tuple."""
    workers: int = field(default=0, metadata=ge(0))
    """Processes of the verifier pool; 0 uses the machine's cores, 1 scores in-process."""
    pool_min_batch: int = field(default=16, metadata=ge(1))
    """Smallest batch sent to the pool; smaller batches are scored in-process (on 2 cores the
    pool is x1.5 faster at 16 samples, x1.1 at 8 and slower at 4: ``bench/verifiers.py``)."""
    stop: tuple[str, ...] = DEFAULT_STOPS
    """The completion is cut at the first of these strings before extraction."""


_MV: Any = None


def _math_verify() -> Any:
    """The math-verify module, imported on first use with its own timers' warnings off."""
    global _MV
    if _MV is None:
        import math_verify
        import math_verify.grader
        import math_verify.parser

        # We disable math-verify's SIGALRM timers (ours covers the whole sample); it logs a
        # warning the first time that happens in each module. Mark it as already shown.
        math_verify.parser.TIMEOUT_WARNING_SHOWN = True
        math_verify.grader.TIMEOUT_WARNING_SHOWN = True
        _MV = math_verify
    return _MV


def _parse(text: str) -> list[Any]:
    return list(_math_verify().parse(text, parsing_timeout=None))


def _latex(text: str) -> str:
    """Plain answer text wrapped in ``$...$`` unless it already has math delimiters."""
    t = text.strip()
    if "$" in t or "\\boxed" in t or "\\(" in t or "\\[" in t:
        return t
    return f"${t}$"


@lru_cache(maxsize=4096)
def parse_reference(reference: str) -> tuple[Any, ...]:
    """The parsed reference answer (cached: a group's samples share it); empty if unparseable."""
    found = _parse(_latex(reference))
    if not found:
        found = _parse(reference)
    return tuple(found)


_MAX_POWER_BITS = 1 << 24
"""An integer power beyond about 2^(2^24) (5 million digits) is not computed: CPython raises
big powers in C, where no timer can stop it, so ``9^{9^{9^9}}`` would hang the process."""


def _log2_size(e: Any) -> float | None:
    """log2 of ``|e|`` for integers and integer power towers (``inf`` when that is beyond
    floats), None for anything else."""
    if e.is_Integer:
        return float(max(int(abs(e)).bit_length() - 1, 0))
    if e.is_Pow:
        base, exp = (_log2_size(a) for a in e.args)
        if base is None or exp is None or e.args[1].is_negative:
            return None
        return base * 2.0**exp if exp < 1000 else math.inf
    return None


def _refuse_huge_powers(parsed: list[Any]) -> None:
    """Raise :class:`VerifierTimeout` when an answer holds an integer power too big to compute
    (see :data:`_MAX_POWER_BITS`): the comparison could not finish in any time limit."""
    from sympy import Basic, preorder_traversal

    for expr in parsed:
        if not isinstance(expr, Basic):
            continue
        for node in preorder_traversal(expr):
            if node.is_Pow:
                bits = _log2_size(node)
                if bits is not None and bits > _MAX_POWER_BITS:
                    raise VerifierTimeout(
                        f"the answer holds a power of about 2^{bits:.3g}, too big to compute"
                    )


def _shown(parsed: list[Any]) -> str:
    texts = [p for p in parsed if isinstance(p, str)]
    return (texts[0] if texts else str(parsed[0]))[:200]


class MathVerifier(BaseVerifier[MathParams]):
    """The answer is mathematically equal to the reference (math-verify)."""

    type = "math"
    Params = MathParams
    cpu_heavy = True
    code_modules = ("trustgrpo.verifiers.extract",)
    dependencies = ("math-verify", "latex2sympy2_extended", "sympy")
    execution_params = frozenset({"workers", "pool_min_batch"})

    def prepare(self) -> None:
        """Import math-verify (once per process)."""
        _math_verify()

    def _prediction(self, completion: str) -> tuple[list[Any], str]:
        text = cut_at_stop(completion, self.params.stop)
        mode = self.params.extract
        if mode == "auto":
            return _parse(text), "math-verify found no answer it could parse"
        found = boxed_contents(text) if mode == "boxed" else tag_contents(text)
        distinct = list(dict.fromkeys(f.strip() for f in found))
        what = "\\boxed{}" if mode == "boxed" else "<answer>"
        if not distinct:
            return [], f"no {what} answer found"
        if len(distinct) > 1:
            return [], f"several different {what} answers: " + ", ".join(distinct)[:200]
        inner = distinct[0]
        if not inner:
            return [], f"empty {what} answer"
        return _parse(_latex(inner)), f"the {what} answer could not be parsed"

    def check(self, sample: Sample) -> Check:
        if sample.reference is None or not sample.reference.strip():
            return abstain("no reference answer")
        gold = parse_reference(sample.reference)
        if not gold:
            return abstain(f"math-verify cannot parse the reference {sample.reference[:100]!r}")
        pred, reason = self._prediction(sample.completion)
        if not pred:
            return incorrect(reason)
        _refuse_huge_powers([*gold, *pred])
        p = self.params
        same = _math_verify().verify(
            list(gold),
            pred,
            float_rounding=p.float_rounding,
            numeric_precision=p.numeric_precision,
            strict=p.strict,
            timeout_seconds=None,
        )
        if same:
            return correct(extracted=_shown(pred))
        return incorrect("not equal to the reference", extracted=_shown(pred))

    def gold_completion(self, sample: Sample) -> str | None:
        """The reference in ``\\boxed{}`` (or in ``<answer>`` tags for ``answer_tag``)."""
        ref = sample.reference
        if ref is None or not ref.strip():
            return None
        inner = ref.strip().strip("$").strip()
        if self.params.extract == "answer_tag":
            return f"<answer>{inner}</answer>"
        if "\\boxed" in inner:
            return f"The answer is ${inner}$."
        return f"The answer is $\\boxed{{{inner}}}$."

    def canaries(self, sample: Sample) -> list[tuple[str, str]]:
        """Empty, format only, wrong, several answers, and a mention of the answer followed
        by a different final answer."""
        out = super().canaries(sample)
        ref = sample.reference
        if ref is None or not ref.strip():
            return out
        inner = ref.strip().strip("$").strip()
        bad = wrong_answer(inner)
        if bad.endswith(" (not)"):
            bad = f"{inner}+1"
        if self.params.extract == "answer_tag":
            out += [
                ("empty tag", "<answer></answer>"),
                ("wrong answer", f"<answer>{bad}</answer>"),
                ("several answers", f"<answer>{bad}</answer><answer>{inner}</answer>"),
            ]
        else:
            out += [
                ("empty box", "\\boxed{}"),
                ("wrong answer", f"$\\boxed{{{bad}}}$"),
                ("several answers", f"$\\boxed{{{bad}}}$ or $\\boxed{{{inner}}}$"),
                ("mentions the answer", f"Maybe ${inner}$? No, the answer is $\\boxed{{{bad}}}$."),
            ]
        return out


def _s(completion: str, reference: str) -> Sample:
    """A one-off sample (for the examples)."""
    return Sample("p", 0, 0, "", completion, reference)


__all__ = ["MathParams", "MathVerifier", "parse_reference"]
