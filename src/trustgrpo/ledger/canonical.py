"""Canonical JSON (RFC 8785, the JSON Canonicalization Scheme) for ledger leaves.

The ``rfc8785`` package is the reference encoder, but it is pure Python and runs at about
25,000 reward events a second here, half the ledger's budget. :func:`canonical_json` therefore
takes a fast path that gives the same bytes for the values events hold, and falls back to
``rfc8785`` for everything else:

* the stdlib's C encoder with sorted keys, ``(",", ":")`` separators and raw UTF-8 writes
  strings exactly as RFC 8785 §3.2.2.2 does (only ``"``, ``\\`` and control characters are
  escaped, the latter as ``\\b \\t \\n \\f \\r`` or lowercase ``\\u00xx``);
* sorting by code point equals RFC 8785's UTF-16 order when keys are ASCII (§3.2.3);
* numbers (§3.2.2.3, ECMAScript ``Number.prototype.toString``): integral floats below 2^53 are
  written as integers (``1.0`` → ``1``); other floats with 1e-4 <= |x| < 2^53 are written the
  same by ``repr`` and ECMAScript; integers must lie within ±(2^53 - 1).

Anything else (non-ASCII keys, floats below 1e-4 or beyond 2^53, ...) goes through
``rfc8785.dumps``. A property test checks the two agree on arbitrary JSON values.
"""

from __future__ import annotations

import json
import json.encoder
import math
from typing import Any

import rfc8785

from trustgrpo.errors import LedgerError

_MAX_INT = 2**53 - 1
_MAX_FRACTIONAL = 2.0**52  # floats at or above this are integers
_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
if _c_make_encoder is not None:  # the C encoder, built once (JSONEncoder.encode rebuilds it)
    _c_encode = _c_make_encoder(
        None, None, json.encoder.encode_basestring, None, ":", ",", True, False, False
    )

    def _encode(value: Any) -> str:
        return "".join(_c_encode(value, 0))

else:  # pragma: no cover - interpreters without the C accelerator
    _json_encoder = json.JSONEncoder(
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )

    def _encode(value: Any) -> str:
        return _json_encoder.encode(value)


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
        return _encode(_prepare(value)).encode("utf-8")
    except (_Slow, UnicodeEncodeError):
        pass
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as e:
        raise LedgerError(f"cannot encode as canonical JSON (RFC 8785): {e}") from None


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
