"""Canonical JSON: the fast path (orjson, checked and fixed up) gives exactly the bytes of the
``rfc8785`` reference."""

from __future__ import annotations

import enum
import math
import uuid
from pathlib import Path

import numpy as np
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from trustgrpo.errors import LedgerError
from trustgrpo.ledger.canonical import canonical_json, to_jsonable

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(
        [
            *(0.0, -0.0, 1.0, -1.0, 10.0, 1e-4, 9.99e-5, 1e-5, 1e-6, 1.5e-6, 1e-7, 1e15, 1e16),
            *(2.0**53, 1e20, 1e21, 1e22, 5e-324, 1.7976931348623157e308, 0.1 + 0.2, -0.05),
            123456789012.5,
        ]
    )
    | st.text()
    # strings that look like what the fast path fixes up in numbers
    | st.text(alphabet='0123456789.,]}e+-"\\ ', max_size=12)
    | st.sampled_from(["1.0", "a.0,", "x.0}", "3e-5", "-0.0", "1e+16", ".0"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_same_bytes_as_rfc8785(value: object) -> None:
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:  # e.g. a lone surrogate in a string
        with pytest.raises(LedgerError):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_as_rfc8785(x: float) -> None:
    assert canonical_json({"x": x, "y": [x]}) == rfc8785.dumps({"x": x, "y": [x]})


@pytest.mark.parametrize(
    "value",
    [
        {"s": "v1.0,", "n": 1.0},  # the ".0" fix must not touch strings
        {"s": "1.0}", "t": ["2.0]", 2.0]},
        {"s": "lr 3e-5", "x": 0.5},
        {"a": -0.0, "b": [-0.0], "c": "-0.0"},
        {"a": -10.0, "b": -0.05, "c": 100.0},
        1.0,
        -0.0,
        [1e-6, 1e16],
        {"n": None, "x": 1.0},
    ],
)
def test_fix_ups_are_exact(value: object) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


class _Color(enum.Enum):
    RED = "red"


def test_rfc8785_number_examples() -> None:
    # RFC 8785 §3.2.2.3 and Appendix B samples
    value = {"numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001]}
    assert canonical_json(value) == b'{"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27]}'
    assert canonical_json([0.0, -0.0, 1.0, 1e21, 1e-7, 123456789012345680000.0]) == (
        b"[0,0,1,1e+21,1e-7,123456789012345680000]"
    )


def test_rfc8785_key_order_utf16() -> None:
    # RFC 8785 §3.2.3: keys sort by UTF-16 code units, so U+1F600 (a surrogate pair, 0xD83D)
    # sorts before U+FB33 even though its code point is larger.
    value = {"\ufb33": 1, "\U0001f600": 2, "a": 3, "\u00e9": 4}
    assert canonical_json(value) == rfc8785.dumps(value)
    assert canonical_json(value).index("\U0001f600".encode()) < canonical_json(value).index(
        "\ufb33".encode()
    )


def test_strings_escaped_as_rfc8785() -> None:
    value = {"s": 'a"b\\c\n\t\u0001\u001f\u007f\u2028é😀'}
    assert canonical_json(value) == rfc8785.dumps(value)
    assert canonical_json(value) == '{"s":"a\\"b\\\\c\\n\\t\\u0001\\u001f\u007f\u2028é😀"}'.encode()


@pytest.mark.parametrize(
    "bad",
    [
        *(math.nan, math.inf, -math.inf, 2**53, -(2**53), "\ud800", {1: 2}, Path("/x"), b"x"),
        *(uuid.UUID(int=7), _Color.RED, [math.nan, None], {"y": math.inf, "z": None}),
    ],
)
def test_rejects_what_rfc8785_cannot_encode(bad: object) -> None:
    with pytest.raises(LedgerError, match="canonical JSON"):
        canonical_json({"x": bad})


def test_tuples_are_arrays() -> None:
    assert canonical_json({"t": (1, 2.5, "x")}) == b'{"t":[1,2.5,"x"]}'


def test_to_jsonable() -> None:
    value = {
        "path": Path("/a/b"),
        "nan": math.nan,
        "inf": -math.inf,
        "np": np.float32(0.5),
        "npi": np.int64(7),
        "arr": np.arange(3),
        "big": 2**60,
        "set": {3, 1},
        "tuple": (1, 2),
        1: "int key",
    }
    out = to_jsonable(value)
    assert out == {
        "path": "/a/b",
        "nan": "NaN",
        "inf": "-Infinity",
        "np": 0.5,
        "npi": 7,
        "arr": [0, 1, 2],
        "big": str(2**60),
        "set": [1, 3],
        "tuple": [1, 2],
        "1": "int key",
    }
    canonical_json(out)  # and it encodes
