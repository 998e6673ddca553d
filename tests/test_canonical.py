"""RFC 8785 (JCS) through the binding: the RFC's examples, a cross-check against the
`rfc8785` reference package on generated values, the BLAKE3 digest, and rejected inputs."""

from __future__ import annotations

import enum
import json
import struct
from typing import Any

import blake3
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from provgraph._core import canonical_hash, canonical_hashes, canonicalize, canonicalize_json
from provgraph.errors import InvalidArgumentError

RFC_SAMPLE = rb"""{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"""
RFC_SAMPLE_CANONICAL = (
    b'{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    + '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'.encode()
)

RFC_SORTING = rb"""{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}"""
RFC_SORTING_CANONICAL = (
    '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
    '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
    '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
).encode()

APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def test_rfc_sample_from_text_and_objects() -> None:
    assert canonicalize_json(RFC_SAMPLE) == RFC_SAMPLE_CANONICAL
    assert canonicalize(json.loads(RFC_SAMPLE)) == RFC_SAMPLE_CANONICAL


def test_rfc_sorting_example() -> None:
    assert canonicalize_json(RFC_SORTING) == RFC_SORTING_CANONICAL
    assert canonicalize(json.loads(RFC_SORTING)) == RFC_SORTING_CANONICAL


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B)
def test_rfc_appendix_b(bits: str, expected: str) -> None:
    f = struct.unpack(">d", bytes.fromhex(bits))[0]
    assert canonicalize(f) == expected.encode()
    assert canonicalize_json(repr(f).encode()) == expected.encode()
    assert canonicalize([f]) == rfc8785.dumps([f])


def test_literals_containers_and_escapes() -> None:
    assert canonicalize(None) == b"null"
    assert canonicalize(True) == b"true"
    assert canonicalize(False) == b"false"
    assert canonicalize({}) == b"{}"
    assert canonicalize([]) == b"[]"
    assert canonicalize(()) == b"[]"
    assert canonicalize({"b": [{}, [], ()], "a": {"y": (1, 2.0), "x": [None]}}) == (
        b'{"a":{"x":[null],"y":[1,2]},"b":[{},[],[]]}'
    )
    controls = "".join(chr(c) for c in range(0x20))
    assert canonicalize(controls) == (
        b'"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f'
        b'\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c'
        b'\\u001d\\u001e\\u001f"'
    )
    literal = "\x7f\u2028\u2029/<>&'é€\U0001f600"
    assert canonicalize(literal) == b'"' + literal.encode() + b'"'
    assert canonicalize('a"b\\c') == b'"a\\"b\\\\c"'


def test_ints_follow_ieee_double() -> None:
    assert canonicalize(2**53) == b"9007199254740992"
    assert canonicalize(2**53 + 1) == b"9007199254740992"  # ties to even
    assert canonicalize(-(2**53) - 1) == b"-9007199254740992"
    assert canonicalize(2**63 - 1) == b"9223372036854776000"
    assert canonicalize(-(2**63)) == b"-9223372036854776000"
    assert canonicalize(2**64) == b"18446744073709552000"
    assert canonicalize(10**30) == b"1e+30"
    assert canonicalize(-0.0) == b"0"
    assert canonicalize_json(b"-0") == b"0"
    assert canonicalize_json(b"18446744073709551616") == b"18446744073709552000"


def test_python_subclasses() -> None:
    class Color(enum.IntEnum):
        RED = 3

    class Name(str):
        pass

    assert canonicalize([True, False, Color.RED, Name("n")]) == b'[true,false,3,"n"]'
    assert canonicalize({Name("b"): 1, "a": 2}) == b'{"a":2,"b":1}'


@pytest.mark.parametrize(
    "bad",
    [
        {1, 2},
        b"bytes",
        bytearray(b"x"),
        float("nan"),
        float("inf"),
        -float("inf"),
        [1.0, float("nan")],
        {1: "non-str key"},
        {("a",): 1},
        {"nested": {None: 1}},
        "\ud800",
        {"\udfff": 1},
        object(),
        10**400,
        complex(1, 2),
    ],
    ids=repr,
)
def test_invalid_objects_raise_value_error(bad: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        canonicalize(bad)
    with pytest.raises(ValueError):
        canonical_hash(bad)


def test_nesting_limit_matches_json_path() -> None:
    def nest(n: int) -> Any:
        obj: Any = []
        for _ in range(n - 1):
            obj = [obj]
        return obj

    ok, too_deep = nest(127), nest(128)
    assert canonicalize(ok) == canonicalize_json(json.dumps(ok).encode())
    with pytest.raises(InvalidArgumentError):
        canonicalize(too_deep)
    with pytest.raises(InvalidArgumentError):
        canonicalize_json(json.dumps(too_deep).encode())
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(InvalidArgumentError):
        canonicalize(cyclic)


@pytest.mark.parametrize(
    "bad",
    [
        b'{"a":1,"a":2}',
        b'{"x":{"b":1,"\\u0062":2}}',
        b'"\\ud800"',
        b"1e400",
        b"{",
        b"[1,]",
        b"NaN",
        b"1 2",
        b'"\xff"',
        b"",
    ],
    ids=repr,
)
def test_invalid_json_text_raises_value_error(bad: bytes) -> None:
    with pytest.raises(InvalidArgumentError):
        canonicalize_json(bad)


def test_hash_known_value() -> None:
    obj = {"b": 1, "a": [1.0, 2e0, "x"]}
    assert canonical_hash(obj) == blake3.blake3(b'{"a":[1,2,"x"],"b":1}').digest()
    assert canonical_hash(obj) == canonical_hash({"a": [1, 2, "x"], "b": 1.0})
    assert len(canonical_hash(None)) == 32


# --- cross-check against the rfc8785 reference package -------------------------------------

_keys = st.text(st.characters(codec="utf-8"), max_size=6)
_floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 5e-324, -5e-324, 1.7976931348623157e308, 1e21, 1e-7, 1e-6, 999999999999999900000.0,
     0.1, 1 / 3, 2.0**53, -(2.0**60)])
_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | _floats
    | st.text(st.characters(codec="utf-8"), max_size=10)
)
_json = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_keys, inner, max_size=6),
    max_leaves=40,
)


@settings(max_examples=600, deadline=None)
@given(_json)
def test_matches_rfc8785_reference(value: Any) -> None:
    expected = rfc8785.dumps(value)
    assert canonicalize(value) == expected
    # JSON text (Python's json escapes non-ASCII as \uXXXX pairs) canonicalizes the same.
    assert canonicalize_json(json.dumps(value).encode()) == expected
    assert canonicalize_json(expected) == expected
    assert canonical_hash(value) == blake3.blake3(expected).digest()


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(st.characters(min_codepoint=0xD000, codec="utf-8"), max_size=3),
                       st.integers(0, 9), max_size=12))
def test_utf16_member_order(value: dict[str, int]) -> None:
    # Keys around the BMP/astral boundary, where UTF-16 and code point order disagree.
    assert canonicalize(value) == rfc8785.dumps(value)
    order = [k for k, _ in sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))]
    assert list(json.loads(canonicalize(value))) == order


@settings(max_examples=300, deadline=None)
@given(st.integers())
def test_any_int_is_its_double(n: int) -> None:
    try:
        f = float(n)
    except OverflowError:
        with pytest.raises(InvalidArgumentError):
            canonicalize(n)
        return
    assert canonicalize(n) == canonicalize(f)
    assert float(canonicalize(n)) == f


# --- fast paths of the object encoder and the batch entry point ----------------------------


def test_escapes_at_run_edges_match_reference() -> None:
    # The string writer copies clean runs found 8 bytes at a time: escapes at the start,
    # middle and end of runs and on either side of the word boundaries.
    specials = ['"', "\\", "\n", "\x01", "\x1f", "\x7f", " ", "#", "]", "é", "\U0001f600"]
    for n in range(18):
        for pos in range(n + 1):
            for sp in specials:
                s = "a" * pos + sp + "b" * (n - pos)
                for v in (s, sp + s + sp, {s: s}):
                    assert canonicalize(v) == rfc8785.dumps(v), repr(v)


def test_member_order_mixing_ascii_bmp_and_astral_names() -> None:
    names = ["b", "a", "ab", "\u07ff", "\ud7ff", "\ue000", "\uffff", "\U00010000", "\U0001f600",
             "a\uffff", "a\U0001f600", "a\ue000x", "a\U0010ffff", ""]
    value = {n: i for i, n in enumerate(names)}
    order = sorted(names, key=lambda n: n.encode("utf-16-be"))
    assert list(json.loads(canonicalize(value))) == order
    assert canonicalize(value) == rfc8785.dumps(value)
    # Already in UTF-16 order, in code point order, and reversed: same bytes.
    for keys in (order, sorted(names), order[::-1]):
        assert canonicalize({n: value[n] for n in keys}) == canonicalize(value)


def test_subclasses_take_the_general_path() -> None:
    from collections import OrderedDict, UserDict

    class L(list[Any]):
        pass

    class T(tuple[Any, ...]):
        pass

    class F(float):
        pass

    class I(int):
        def __float__(self) -> float:  # not consulted: the int value is used
            return 0.0

    value = OrderedDict([("b", L([T((1,)), F(2.5)])), ("a", I(2**64))])
    assert canonicalize(value) == b'{"a":18446744073709552000,"b":[[1],2.5]}'
    with pytest.raises(InvalidArgumentError):
        canonicalize(UserDict(a=1))


def test_duplicate_names_from_str_subclasses_rejected() -> None:
    class Alias(str):
        def __hash__(self) -> int:
            return 1

        def __eq__(self, other: object) -> bool:
            return other is self

    with pytest.raises(InvalidArgumentError, match="duplicate"):
        canonicalize({"a": 1, Alias("a"): 2})


def test_canonical_hashes_batch() -> None:
    objs: list[Any] = [
        {"actor": {"id": f"user:{i}", "roles": ["analyst", "cleared"]},
         "resource": {"id": f"r{i}", "attributes": {"classification": "internal"}},
         "context": {"purpose": "analysis", "n": i / 3}}
        for i in range(300)
    ] + [None, "x", [], {}, 1.5]
    expected = [canonical_hash(o) for o in objs]
    assert canonical_hashes(objs) == expected
    assert canonical_hashes(tuple(objs)) == expected
    assert canonical_hashes(o for o in objs) == expected
    assert canonical_hashes([]) == []
    assert len(set(expected)) == len(expected)
    with pytest.raises(InvalidArgumentError, match=r"objs\[2\]"):
        canonical_hashes([{}, [], {"a": float("nan")}])
    with pytest.raises(TypeError):
        canonical_hashes(5)  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(st.lists(_json, max_size=8))
def test_canonical_hashes_match_reference(values: list[Any]) -> None:
    assert canonical_hashes(values) == [blake3.blake3(rfc8785.dumps(v)).digest() for v in values]


def test_unsupported_type_error_runs_no_python_code() -> None:
    """The error names the type without calling back into Python (a `str` subclass as a class's
    `__name__` could otherwise run its `__str__` in the middle of the walk)."""
    calls: list[str] = []

    class Name(str):
        def __str__(self) -> str:
            calls.append("__str__")
            return "hijacked"

    weird = type(Name("Weird"), (), {})
    for value in ({"a": [weird()]}, {"k": {"nested": (1, weird())}}):
        with pytest.raises(InvalidArgumentError) as exc:
            canonicalize(value)
        assert "Weird" in str(exc.value)
    with pytest.raises(InvalidArgumentError):
        canonical_hashes([{"ok": 1}, [weird()]])
    assert calls == []


def test_canonical_hashes_of_a_list_shrunk_by_another_thread() -> None:
    """Hashing a large item releases the GIL; a list shrunk meanwhile ends the batch cleanly
    (its length is read again), never with a stale index."""
    import threading

    def shrink(items: list[Any], stop: threading.Event) -> None:
        while items and not stop.is_set():
            items.pop()

    big = {"blob": "x" * 200_000}
    for _ in range(20):
        items: list[Any] = [big] * 200
        stop = threading.Event()
        t = threading.Thread(target=shrink, args=(items, stop))
        t.start()
        try:
            got = canonical_hashes(items)
        finally:
            stop.set()
            t.join()
        assert all(d == canonical_hash(big) for d in got)
