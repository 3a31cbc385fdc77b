"""safe_relative_path: what it accepts, what it refuses, and properties over random input."""

from __future__ import annotations

import os
import subprocess
import sys
import unicodedata
from urllib.parse import quote, unquote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from slipstream.errors import PathNotAllowed
from slipstream.pathsafety import MAX_PATH_BYTES, MAX_SEGMENT_BYTES, safe_relative_path

ACCEPTED = [
    ("a.txt", ("a.txt",)),
    ("a/b.txt", ("a", "b.txt")),
    ("a//b", ("a", "b")),
    ("./a", ("a",)),
    ("a/./b/.", ("a", "b")),
    ("a/", ("a",)),
    (".", ()),
    ("a\\b", ("a", "b")),  # backslash is a separator
    ("with space.txt", ("with space.txt",)),
    ("café.txt", ("café.txt",)),
    ("100%.txt", ("100%.txt",)),
    ("100%25.txt", ("100%25.txt",)),  # returned as given, not decoded
    ("a%20b.txt", ("a%20b.txt",)),
    ("a..b.txt", ("a..b.txt",)),
    ("..a", ("..a",)),
    ("a..", ("a..",)),
    (".hidden", (".hidden",)),
    (". ", (". ",)),
    ("file.", ("file.",)),
    ("日本/資料.pdf", ("日本", "資料.pdf")),
    ("ab:c", ("ab:c",)),  # a colon that is not a drive letter
    ("x" * MAX_SEGMENT_BYTES, ("x" * MAX_SEGMENT_BYTES,)),
    ("%41%42", ("%41%42",)),
]

REJECTED = [
    "",
    "..",
    "../x",
    "a/../../x",
    "a/..",
    "a\\..\\b",
    "..\\x",
    "/etc/passwd",
    "\\etc\\passwd",
    "//host/share",
    "\\\\host\\share\\x",
    "\\\\?\\C:\\x",
    "C:",
    "C:x",
    "c:\\windows",
    "Z:/x",
    "a\x00b",
    "\x00",
    "a\nb",
    "a\tb",
    "a\x7fb",
    "a\x85b",  # C1 control (NEL)
    "a\ud800b",  # lone surrogate
    "a\udfffb",
    "a\ufffdb",
    "...",
    "....//x",
    ".. ",
    ". .",
    "a/.../b",
    "%2e%2e/x",
    "%2E%2E/x",
    "%2e%2E%2fx",
    ".%2e/x",
    "..%2fx",
    "..%5cx",
    "%2fetc%2fpasswd",
    "%5c%5chost%5cshare",
    "C%3a%5cx",
    "%252e%252e%252fx",
    "%25252e%25252e%25252fx",
    "a%00b",
    "a%2500b",
    "a%0ab",
    "..%c0%af",
    "%c0%ae%c0%ae/",
    "%e0%80%ae%e0%80%ae/x",
    "%f0%80%80%ae/x",
    "%c0%2e%c0%2e/x",
    "%ed%a0%80",  # encoded surrogate (invalid in strict UTF-8)
    "%ff",
    "%ef%bf%bd",  # U+FFFD itself
    "\u2024\u2024/x",  # ONE DOT LEADER x2
    "\u2025/x",  # TWO DOT LEADER
    "\uff0e\uff0e/x",  # FULLWIDTH FULL STOP
    "\ufe52\ufe52/x",  # SMALL FULL STOP
    "..\uff0fx",  # FULLWIDTH SOLIDUS
    "\uff0fetc",
    "\uff3cx",  # FULLWIDTH REVERSE SOLIDUS
    "a\uff0fb",  # a lookalike separator anywhere
    "a:b",  # drive-relative on Windows
    "a\uff0f\uff0e\uff0e\uff0fb",
    "%ef%bc%8e%ef%bc%8e/x",
    "\uff05\uff12\uff45\uff05\uff12\uff45/x",  # fullwidth "%2e%2e": NFKC then decode
    ".\\%2F",  # dropping "." would leave "%2F", which decodes to "/"
    "./C:x",
    "..%20/x",
    "..%2e/x",
    "%2525252525252e",  # keeps decoding past the round limit
    "a/" * (MAX_PATH_BYTES // 2 + 1),
    "x" * (MAX_SEGMENT_BYTES + 1),
    "é" * (MAX_SEGMENT_BYTES // 2 + 1),  # 2 bytes each in UTF-8
]


@pytest.mark.parametrize(("path", "expected"), ACCEPTED)
def test_accepts(path: str, expected: tuple[str, ...]) -> None:
    assert safe_relative_path(path) == expected


@pytest.mark.parametrize("path", REJECTED)
def test_rejects(path: str) -> None:
    with pytest.raises(PathNotAllowed) as info:
        safe_relative_path(path)
    assert info.value.status == 403
    assert info.value.message == "file path is not allowed"


def test_rejects_non_string() -> None:
    with pytest.raises(PathNotAllowed):
        safe_relative_path(b"a.txt")  # type: ignore[arg-type]


def test_module_is_pure() -> None:
    """No trio (and no I/O framework) gets imported with the module."""
    code = "import sys, slipstream.pathsafety, slipstream.storage; print('trio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- properties ---------------------------------------------------------------------------

_INTERESTING = st.sampled_from(
    [
        *"./\\%2eEfFcC05a:",
        "\x00",
        "\uff0e",
        "\u2024",
        "\u2025",
        "\uff0f",
        "\uff3c",
        "\ufe52",
        "\ud800",
        "é",
    ]
)
_PATHS = st.one_of(
    st.text(_INTERESTING, max_size=24),
    st.text(max_size=24),
    st.lists(
        st.sampled_from(["..", ".", "a", "%2e", "%2f", "%25", "\uff0e", "b c"]), max_size=8
    ).map("/".join),
)


def _is_dot_run(seg: str) -> bool:
    return seg.count(".") >= 2 and not seg.strip(". ")


@settings(max_examples=400, deadline=None)
@given(_PATHS)
def test_accepted_paths_stay_inside(path: str) -> None:
    try:
        segments = safe_relative_path(path)
    except PathNotAllowed:
        return
    for seg in segments:
        assert seg not in ("", ".", "..")
        assert "/" not in seg and "\\" not in seg
        norm = unicodedata.normalize("NFKC", seg)
        assert not _is_dot_run(norm)
        assert "/" not in norm and "\\" not in norm
        assert all(unicodedata.category(c) not in ("Cc", "Cs") for c in seg)
    joined = os.path.normpath(os.path.join("/base", *segments))
    assert joined == "/base" or joined.startswith("/base/")
    # Idempotent: the normalised form is accepted and gives the same segments.
    if segments:
        assert safe_relative_path("/".join(segments)) == segments


@settings(max_examples=400, deadline=None)
@given(_PATHS, st.integers(min_value=1, max_value=3), st.sampled_from(["", "/"]))
def test_encoding_a_refused_path_never_makes_it_acceptable(
    path: str, rounds: int, safe: str
) -> None:
    """Percent-encoding a refused path (1-3 times) must not sneak it past the check."""
    assume(not any(unicodedata.category(c) == "Cs" for c in path))  # quote() cannot encode
    try:
        safe_relative_path(path)
    except PathNotAllowed:
        pass
    else:
        return
    encoded = path
    for _ in range(rounds):
        encoded = quote(encoded, safe=safe)
    with pytest.raises(PathNotAllowed):
        safe_relative_path(encoded)


_NAME_CHARS = st.sampled_from(list("abcXYZ019-_ .%~é日"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(_NAME_CHARS, min_size=1, max_size=12), min_size=1, max_size=6))
def test_ordinary_names_round_trip(names: list[str]) -> None:
    assume(all(n != "." and not _is_dot_run(n) for n in names))
    path = "/".join(names)
    try:
        result = safe_relative_path(path)
    except PathNotAllowed:
        # Only legitimate when a name percent-decodes to something unsafe ("%01", "%e9").
        assert "%" in path and unquote(path) != path
        return
    assert result == tuple(names)
