"""Where the answer is in a completion: pure helpers shared by the built-in verifiers.

Every extractor returns ``(answer, reason)``: the answer text, or ``None`` with the reason it
could not be found. Ambiguity is a failure, not a choice: several *different* ``\\boxed{}``
answers or ``<answer>`` tags give ``None`` ("several answers"), so a model cannot hedge by
listing candidates and letting the grader pick the right one.

>>> extract_answer("so it is 3, no, 42", "last_number")
('42', '')
>>> extract_answer(r"\\boxed{3} or \\boxed{4}", "boxed")
(None, 'several different \\\\boxed{} answers: 3, 4')
>>> parse_number("1,234.5"), parse_number("-3/4"), parse_number("12 apples")
(Fraction(2469, 2), Fraction(-3, 4), None)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Literal

Extract = Literal["full", "last_number", "first_number", "boxed", "answer_tag", "last_line"]

#: End-of-text markers cut off before extraction (when the tokenizer kept them as text).
DEFAULT_STOPS: tuple[str, ...] = ("<eos>", "</s>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>")

_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?"
#: A number inside text: not glued to a preceding word character or decimal point.
NUMBER_RE = re.compile(rf"(?<![\w.])[-+]?(?:{_NUM})")
_FULL_NUMBER_RE = re.compile(rf"[-+]?(?:{_NUM})(?:\s*/\s*(?:{_NUM}))?")
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` up to the first stop string (all of it when none occurs).

    >>> cut_at_stop("42<eos>7", ["<eos>"])
    '42'
    """
    end = len(text)
    for s in stops:
        if s:
            i = text.find(s)
            if 0 <= i < end:
                end = i
    return text[:end]


def parse_number(text: str) -> Fraction | None:
    """The exact value of ``text`` if it is one number (decimal, ``1,234``, ``1e3``, ``3/4``)."""
    t = text.strip()
    if not _FULL_NUMBER_RE.fullmatch(t):
        return None
    num, _, den = t.replace(",", "").partition("/")
    try:
        value = Fraction(num.strip())
        if den:
            value /= Fraction(den.strip())
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return value


def find_numbers(text: str) -> list[str]:
    """Every number in ``text``, in order.

    >>> find_numbers("5-3 = 2, or x = -1.5e2")
    ['5', '3', '2', '-1.5e2']
    """
    return NUMBER_RE.findall(text)


def boxed_contents(text: str) -> list[str]:
    """The contents of every ``\\boxed{...}`` / ``\\fbox{...}`` with balanced braces.

    >>> boxed_contents(r"\\boxed{\\frac{1}{2}} and \\boxed{x")
    ['\\\\frac{1}{2}']
    """
    out = []
    for m in _BOXED_RE.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            c = text[i]
            if c == "\\" and i + 1 < len(text):
                i += 2
                continue
            depth += c == "{"
            depth -= c == "}"
            i += 1
        if depth == 0:
            out.append(text[m.end() : i - 1])
    return out


def tag_contents(text: str) -> list[str]:
    """The contents of every ``<answer>...</answer>``."""
    return _ANSWER_RE.findall(text)


def _single(found: list[str], what: str) -> tuple[str | None, str]:
    if not found:
        return None, f"no {what} found"
    distinct = list(dict.fromkeys(s.strip() for s in found))
    if len(distinct) > 1:
        return None, f"several different {what} answers: " + ", ".join(distinct)
    return distinct[0], ""


def extract_answer(
    text: str, mode: Extract, stops: Sequence[str] = DEFAULT_STOPS
) -> tuple[str | None, str]:
    """The answer in ``text`` according to ``mode``, or ``None`` and the reason.

    ``full``: the whole completion, stripped; ``last_number`` / ``first_number``: that number
    of the text; ``boxed``: the one ``\\boxed{}`` answer; ``answer_tag``: the one
    ``<answer>...</answer>``; ``last_line``: the last non-empty line.
    """
    text = cut_at_stop(text, stops)
    if mode == "full":
        t = text.strip()
        return (t, "") if t else (None, "empty completion")
    if mode in ("last_number", "first_number"):
        nums = find_numbers(text)
        if not nums:
            return None, "no number found"
        return (nums[-1] if mode == "last_number" else nums[0]), ""
    if mode == "boxed":
        return _single(boxed_contents(text), "\\boxed{}")
    if mode == "answer_tag":
        return _single(tag_contents(text), "<answer>")
    if mode == "last_line":
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return (lines[-1], "") if lines else (None, "empty completion")
    raise ValueError(f"extract: unknown mode {mode!r}")


__all__ = [
    "DEFAULT_STOPS",
    "NUMBER_RE",
    "Extract",
    "boxed_contents",
    "cut_at_stop",
    "extract_answer",
    "find_numbers",
    "parse_number",
    "tag_contents",
]
