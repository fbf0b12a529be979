"""Canonical JSON (RFC 8785, the JSON Canonicalization Scheme) for ledger leaves.

The ``rfc8785`` package is the reference encoder, but it is pure Python: about 40 µs for a
reward event here, when the ledger's whole budget is 20 µs. :func:`canonical_json` encodes with
``orjson`` (Rust; sorted keys, compact, raw UTF-8) and checks that its bytes are the RFC 8785
bytes, which they are for the values events hold:

* strings: orjson escapes exactly what RFC 8785 §3.2.2.2 escapes (``"``, ``\\`` and control
  characters, the latter as ``\\b \\t \\n \\f \\r`` or lowercase ``\\u00xx``), and rejects lone
  surrogates;
* key order: code point order (orjson) equals RFC 8785's UTF-16 order unless a key holds a
  character at or above U+E000 (§3.2.3); such output (a UTF-8 byte >= 0xEE) takes the
  reference;
* numbers (§3.2.2.3, ECMAScript ``Number.prototype.toString``): both write the shortest
  round-trip digits; orjson writes integral floats as ``1.0`` (ECMAScript: ``1``), which is
  fixed by dropping ``.0`` before ``,``, ``}`` or ``]``, and uses exponents in other ranges
  than ECMAScript, so output with an exponent takes the reference; ``OPT_STRICT_INTEGER``
  rejects integers beyond ±(2^53 - 1), as RFC 8785 does;
* decoding the result again must give back the value (Python's ``1 == 1.0``): that catches
  what orjson writes but RFC 8785 cannot (NaN and infinities, which orjson writes as
  ``null``; UUIDs, enums) and a string that the ``.0`` fix changed.

Everything the fast path declines goes through :func:`_prepare` (integral floats made integers,
tuples made lists, anything out of the fast range refused) and orjson again, then through
``rfc8785.dumps``, which raises for what cannot be encoded. A property test checks that the
result equals ``rfc8785.dumps`` on arbitrary JSON values.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson
import rfc8785

from trustgrpo.errors import LedgerError

_MAX_INT = 2**53 - 1
_MAX_FRACTIONAL = 2.0**52  # floats at or above this are integers
_dumps, _loads = orjson.dumps, orjson.loads
_SORTED = orjson.OPT_SORT_KEYS
_STRICT = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_STRICT_INTEGER
    # types orjson would encode but RFC 8785 cannot: refused (TypeError), not converted
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_EXPONENT = re.compile(rb"e[-+][0-9]")
"""orjson writes exponents in other ranges than ECMAScript: such output takes the slower path."""
_NEGATIVE_ZERO = re.compile(rb"-0\.0(?=[,}\]]|\Z)")
"""``-0.0``: ECMAScript writes ``0``."""
_INTEGRAL_FRACTION = re.compile(rb"\.0(?=[,}\]]|\Z)")
"""The ``.0`` of an integral float (``1.0``; ECMAScript writes ``1``)."""


class _Slow(Exception):
    """A value the fast path does not handle; use the reference encoder."""


def _prepare(o: Any) -> Any:
    """A copy of ``o`` whose stdlib encoding is its RFC 8785 encoding, or raise ``_Slow``.

    Scalars are handled inline in the container loops: function calls dominate the cost.
    """
    t = type(o)
    if t is dict:
        out = {}
        for k, v in o.items():
            if type(k) is not str or not k.isascii():
                raise _Slow
            t = type(v)
            if t is str or t is bool or v is None:
                out[k] = v
            elif t is float:
                out[k] = _float(v)
            elif t is int and -_MAX_INT <= v <= _MAX_INT:
                out[k] = v
            else:
                out[k] = _prepare(v)
        return out
    if t is list or t is tuple:
        items = []
        for v in o:
            t = type(v)
            if t is str or t is bool or v is None:
                items.append(v)
            elif t is float:
                items.append(_float(v))
            elif t is int and -_MAX_INT <= v <= _MAX_INT:
                items.append(v)
            else:
                items.append(_prepare(v))
        return items
    if t is str or t is bool or o is None:
        return o
    if t is float:
        return _float(o)
    if t is int and -_MAX_INT <= o <= _MAX_INT:
        return o
    raise _Slow


def _float(x: float) -> float | int:
    """ECMAScript's rendering via ``repr``: integral values as ints, others in [1e-4, 2^53)
    unchanged (``repr`` and ECMAScript agree there); anything else is ``_Slow``."""
    if x.is_integer():
        if -_MAX_INT <= x <= _MAX_INT:
            return int(x)
        raise _Slow
    if 1e-4 <= x < _MAX_FRACTIONAL or -_MAX_FRACTIONAL < x <= -1e-4:  # not inf, not NaN
        return x
    raise _Slow


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 encoding of a JSON value (dicts with str keys, lists, tuples, str, int,
    float, bool, None). Raises :class:`LedgerError` for anything RFC 8785 cannot encode
    (NaN, infinities, integers beyond ±(2^53 - 1), lone surrogates, other types)."""
    try:
        out = _dumps(value, option=_STRICT)
    except TypeError:  # orjson.JSONEncodeError: another type, a big integer, a surrogate
        out = None
    if out is not None:
        fixed = _as_rfc8785(out, value)
        if fixed is not None:
            return fixed
    try:
        return _dumps(_prepare(value), option=_SORTED)
    except (_Slow, TypeError):
        pass
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as e:
        raise LedgerError(f"cannot encode as canonical JSON (RFC 8785): {e}") from None


def _as_rfc8785(out: bytes, value: Any) -> bytes | None:
    """orjson's encoding ``out`` of ``value`` made RFC 8785's, or None where it may differ
    (see the module docstring)."""
    if not out.isascii() and max(out) >= 0xEE:  # a character >= U+E000: key order may differ
        return None
    if _EXPONENT.search(out) or _NEGATIVE_ZERO.search(out):
        return None  # (or, rarely, a string that looks like one)
    out = _INTEGRAL_FRACTION.sub(b"", out)
    # Decoding again must give the value back (Python's 1 == 1.0): NaN and infinities come
    # out of orjson as null, UUIDs and enums as strings, and a string the ".0" fix changed
    # (one that held ".0," say) differs.
    if _loads(out) != value:
        return None
    return out


def to_jsonable(value: Any) -> Any:
    """Plain JSON data from ``value``: mappings, sequences, paths, numpy scalars and arrays,
    dataclasses. Non-finite floats become the strings ``"NaN"``, ``"Infinity"``,
    ``"-Infinity"``; integers beyond ±(2^53 - 1) become strings; unknown objects their
    ``str``. Used on data the ledger does not control (configs, metrics, verifier details)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value) if -_MAX_INT <= value <= _MAX_INT else str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [to_jsonable(v) for v in items]
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return to_jsonable(dataclasses.asdict(value))
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return to_jsonable(tolist())
    if isinstance(value, bytes):
        return value.hex()
    return str(value)
