"""The strict JSON parser's shortcut (a lenient parse that stands when the document is orjson's
own serialization of its value) answers what jiter's strict parse answers, on every document."""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import jiter
import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from keycloak_m2m._jose import JsonParser

PARSER = JsonParser(accept_duplicate_members=False)
STRICT = functools.partial(
    jiter.from_json, allow_inf_nan=False, catch_duplicate_keys=True, cache_mode="all"
)
REFUSED = "refused"

# Numbers as tokens write them and as they should never be: beyond 64 bits, beyond a float,
# written with an exponent, a negative zero.
NUMBER_TEXTS = st.sampled_from(
    [
        "0",
        "-0",
        "-0.0",
        "1.0",
        "1E5",
        "2.5e+3",
        "1e999",
        "-1e400",
        "1.0e-400",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775809",
        "123456789012345678901234567890",
    ]
)
SCALAR_TEXTS = st.one_of(
    st.sampled_from(["null", "true", "false", "NaN", "Infinity", "tru", "01", '"\\ud800"']),
    NUMBER_TEXTS,
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(
        lambda number: orjson.dumps(number).decode()
    ),
    st.text(max_size=6).map(lambda text: json.dumps(text, ensure_ascii=False)),
    st.text(max_size=6).map(json.dumps),
)
# Few names, so that duplicate members are common.
NAMES = st.sampled_from(["a", "b", "é", 'q"', "a "]).map(
    lambda name: json.dumps(name, ensure_ascii=False)
)
COMMAS = st.sampled_from([",", ",", ", "])
COLONS = st.sampled_from([":", ":", ": ", " :"])


@st.composite
def _arrays(draw: st.DrawFn, items: st.SearchStrategy[str]) -> str:
    return "[" + draw(COMMAS).join(draw(st.lists(items, max_size=4))) + "]"


@st.composite
def _objects(draw: st.DrawFn, values: st.SearchStrategy[str]) -> str:
    colon = draw(COLONS)
    members = draw(st.lists(st.tuples(NAMES, values), max_size=4))
    return "{" + draw(COMMAS).join(name + colon + value for name, value in members) + "}"


DOCUMENTS = st.recursive(
    SCALAR_TEXTS,
    lambda children: st.one_of(_arrays(children), _objects(children)),
    max_leaves=12,
).map(lambda text: text.encode())

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children)
    ),
    max_leaves=12,
)


def _verdict(parse: Any, data: bytes) -> Any:
    try:
        return parse(data)
    except ValueError:
        return REFUSED


def _infinite_inside(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_infinite_inside(member) for member in value.values())
    if isinstance(value, list):
        return any(_infinite_inside(item) for item in value)
    return isinstance(value, float) and math.isinf(value)


@settings(max_examples=3000)
@given(DOCUMENTS)
def test_the_parser_answers_what_a_strict_parse_answers(data: bytes) -> None:
    expected = _verdict(STRICT, data)
    found = _verdict(PARSER.parse, data)
    if found == REFUSED:
        assert expected == REFUSED, data
        event("refused")
        return
    value, canonical = found
    event("canonical" if canonical else "parsed again")
    # repr: tells 0 from 0.0 and -0.0, and a key order apart.
    assert repr(value) == repr(expected), data
    assert not (canonical and _infinite_inside(value)), data


@settings(max_examples=1000)
@given(JSON_VALUES)
def test_a_document_in_canonical_form_is_parsed_once(value: Any) -> None:
    data = orjson.dumps(value)
    assert PARSER.parse(data) == (value, True)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"a":1,"a":2}', REFUSED),
        (b'{"a":{"b":1,"b":1}}', REFUSED),
        (b'[{"a":1},{"a":1,"a":1}]', REFUSED),
        (b'{"a":1e999}', {"a": math.inf}),
        (b'{"a":123456789012345678901234567890}', {"a": 123456789012345678901234567890}),
        (b'{"a": 1}', {"a": 1}),
        (b'{"\\u0061":1,"a":1}', REFUSED),
    ],
)
def test_what_is_not_canonical_is_parsed_strictly(data: bytes, expected: Any) -> None:
    found = _verdict(PARSER.parse, data)
    assert found == (REFUSED if expected == REFUSED else (expected, False))


def test_a_parser_that_accepts_duplicates_keeps_the_last() -> None:
    parser = JsonParser(accept_duplicate_members=True)
    assert parser.parse(b'{"a":1,"a":2}') == ({"a": 2}, False)
    assert parser(b'{"a":1,"a":2}') == {"a": 2}
