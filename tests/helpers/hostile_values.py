"""Hostile parameter values: text and JSON that trips naive parsers (Unicode digits,
huge and negative numbers, floats, odd JSON literals), as lists and hypothesis strategies."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from slipstream.numeric import INT64_MAX

TRICKY_TEXT = [
    "\u00b2",  # superscript two: str.isdigit() is true, int() refuses it
    "\u0661\u0662",  # Arabic-Indic digits: int() accepts them
    "\U0001d7d7",  # mathematical bold nine
    "+5",
    "-1",
    " 5",
    "1_000",
    "0x10",
    "1e400",
    "1.5",
    "NaN",
    "",
    "0",
    "604801",
    "9" * 19,
    "9" * 5000,
    "%00",
    "..",
    "\x00",
    "\u2028",
]
text_values = st.one_of(
    st.sampled_from(TRICKY_TEXT),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=40),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.integers(min_value=INT64_MAX - 3, max_value=2**64 + 3).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@dataclass(frozen=True)
class Raw:
    """A JSON literal sent as written (``1e400``, a 5000-digit number...)."""

    text: str


RAW_LITERALS = [
    "1e400",
    "-1e400",
    "1" * 5000,
    "NaN",
    "Infinity",
    "-0",
    "1.0",
    "604800.0",
    "123456789012345678901234567890",
    '"\\ud800"',  # a lone surrogate, escaped
    '"a\\udcffb"',
]
json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**100, -(10**100)]),
    st.floats(allow_nan=True, allow_infinity=True),
    text_values,
    st.lists(st.integers() | st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.sampled_from(RAW_LITERALS).map(Raw),
)


TRICKY_JSON: list[Any] = [
    *(text for text in TRICKY_TEXT if len(text) < 3),
    *(Raw(literal) for literal in RAW_LITERALS),
    None,
    True,
    0,
    -1,
    2**63,
    10**100,
    1.5,
    [],
    {},
]


def json_text(value: Any) -> str:
    """``value`` as JSON text (a :class:`Raw` as written)."""
    return value.text if isinstance(value, Raw) else json.dumps(value)


def json_object(fields: dict[str, Any]) -> str:
    """A JSON object whose values may be :class:`Raw` literals."""
    return "{" + ",".join(f"{json.dumps(k)}:{json_text(v)}" for k, v in fields.items()) + "}"


UNPARSABLE = object()
"""What the server sees of a JSON literal it cannot parse."""


def as_parsed(value: Any) -> Any:
    """``value`` as the server's ``json.loads`` sees it (or :data:`UNPARSABLE`)."""
    try:
        return json.loads(json_text(value))
    except ValueError:
        return UNPARSABLE


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
