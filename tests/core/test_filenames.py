"""``slipstream.filenames``: names from headers and URLs, made safe and unique."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipstream import filenames
from slipstream.filenames import (
    MAX_NAME_BYTES,
    deduplicate,
    disposition_filename,
    is_part_file,
    numbered,
    part_name,
    safe_filename,
    split_extension,
    url_filename,
)

# --- Content-Disposition --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('attachment; filename="report.pdf"', "report.pdf"),
        ("attachment; filename=report.pdf", "report.pdf"),
        ("attachment;filename=report.pdf;size=3", "report.pdf"),
        ('inline; filename="a \\"quoted\\" \\\\ name.txt"', 'a "quoted" \\ name.txt'),
        ('attachment; filename="semi;colon.txt"', "semi;colon.txt"),
        ("attachment; FILENAME=upper.txt", "upper.txt"),
        # filename* wins, wherever it is
        ("attachment; filename*=UTF-8''%E2%82%AC%20rates.pdf; filename=\"x.pdf\"", "€ rates.pdf"),
        ("attachment; filename=\"x.pdf\"; filename*=utf-8'en'%C3%A9t%C3%A9.txt", "été.txt"),
        ("attachment; filename*=ISO-8859-1''%E9t%E9.txt", "été.txt"),
        # an unusable filename* falls back to filename
        ("attachment; filename*=UTF-8''%FF%FE.txt; filename=fallback.txt", "fallback.txt"),
        ("attachment; filename*=KOI8-R''abc; filename=fallback.txt", "fallback.txt"),
        ("attachment; filename*=noquotes; filename=fallback.txt", "fallback.txt"),
        # no disposition type, unterminated quote, junk parameters
        ('filename="bare.txt"', "bare.txt"),
        ('attachment; filename="unterminated.txt', "unterminated.txt"),
        ("attachment; junk; filename=after-junk.txt", "after-junk.txt"),
        ("attachment; filename = spaced.txt ", "spaced.txt"),
        ("attachment; filename=../../etc/passwd", "../../etc/passwd"),  # raw, not safe yet
    ],
)
def test_disposition_filename(value: str, expected: str) -> None:
    assert disposition_filename(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "attachment",
        "inline",
        "",
        'attachment; filename=""',
        "attachment; filename*=UTF-8''",
        "attachment; name=field",
        "attachment; filename*=UTF-8''%C3",  # truncated UTF-8
    ],
)
def test_disposition_without_a_name(value: str) -> None:
    assert disposition_filename(value) is None


# --- URL ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h/a/b.pdf", "b.pdf"),
        ("https://h/a/b%20c.pdf?x=1#frag", "b c.pdf"),
        ("https://h/a/dir/", "dir"),
        ("https://h/%E6%97%A5%E6%9C%AC.txt", "日本.txt"),
        ("https://h/a%2Fb", "a/b"),  # decoded; safe_filename neutralises it
        ("https://h/%FF.bin", "\ufffd.bin"),
        ("https://h/", None),
        ("https://h", None),
        ("https://h//", None),
        ("https://[::1/x", None),  # unparsable
    ],
)
def test_url_filename(url: str, expected: str | None) -> None:
    assert url_filename(url) == expected


# --- safe_filename --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../x", ".._x"),
        ("..", "download"),
        (".", "download"),
        ("...", "download"),
        (" . . ", "download"),
        ("", "download"),
        ("/abs", "_abs"),
        ("/etc/passwd", "_etc_passwd"),
        ("a\\..\\b", "a_.._b"),
        ("\\\\server\\share", "__server_share"),
        ("C:x", "C_x"),
        ("C:\\Windows\\x.exe", "C__Windows_x.exe"),
        ("file::$DATA", "file__$DATA"),
        ('what?<is>"this"|*', "what__is__this___"),
        ("CON", "_CON"),
        ("con", "_con"),
        ("CON.txt", "_CON.txt"),
        ("con.tar.gz", "_con.tar.gz"),
        ("nul .txt", "_nul .txt"),
        ("Com1", "_Com1"),
        ("LPT9.log", "_LPT9.log"),
        ("COM\u00b9", "_COM\u00b9"),
        ("CONIN$", "_CONIN$"),
        ("CONSOLE", "CONSOLE"),
        ("COM10", "COM10"),
        ("AUXILIARY.txt", "AUXILIARY.txt"),
        ("trailing. . ", "trailing"),
        ("0\u00a0.", "0"),  # whitespace other than a space before a trailing dot
        ("a.\u2003.\u00a0", "a"),
        ("\u3000x\u00a0. .", "x"),
        ("  padded  ", "padded"),
        (".bashrc", ".bashrc"),
        ("x\x00y", "x_y"),
        ("tab\there\nnl\x7fdel\x85nel", "tab_here_nl_del_nel"),
        ("lone\ud800surrogate", "lone_surrogate"),
        ("e\u0301t\u0065\u0301.txt", "\u00e9t\u00e9.txt"),  # NFC
        ("日本語.txt", "日本語.txt"),
    ],
)
def test_safe_filename(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


@pytest.mark.parametrize("name", ["0\u00a0.", "x\u2003. .", "y" * 250 + "\u00a0" * 10 + "z"])
def test_safe_filename_is_idempotent(name: str) -> None:
    safe = safe_filename(name)
    assert safe_filename(safe) == safe


def test_safe_filename_default() -> None:
    assert safe_filename("..", default="file.zip") == "file.zip"
    assert safe_filename("/", default="x") == "_"


def test_long_names_are_cut_keeping_the_extension() -> None:
    name = "a" * 300 + ".tar.gz"
    safe = safe_filename(name)
    assert len(safe.encode()) == MAX_NAME_BYTES
    assert safe.endswith(".tar.gz") and safe.startswith("a")
    # multi-byte characters are never split
    safe = safe_filename("é" * 200 + ".txt")
    assert safe == "é" * 125 + ".txt"
    assert len(safe.encode()) == 254
    # no extension: plain cut, trailing spaces and dots removed
    assert safe_filename("b" * 254 + " c") == "b" * 254


_WINDOWS_BAD = re.compile('[\x00-\x1f\x7f-\x9f/\\\\<>:"|?*]')
_RESERVED = re.compile(r"(?i)(con|prn|aux|nul|com[1-9¹²³]|lpt[1-9¹²³]|conin\$|conout\$)( *)(\..*)?")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_safe_filename_properties(name: str) -> None:
    safe = safe_filename(name)
    assert safe
    assert not _WINDOWS_BAD.search(safe)
    assert safe not in (".", "..")
    assert not safe.endswith((".", " "))
    assert len(safe.encode("utf-8")) <= MAX_NAME_BYTES
    assert not _RESERVED.fullmatch(safe)
    assert unicodedata.is_normalized("NFC", safe) or len(safe.encode()) == MAX_NAME_BYTES
    assert safe_filename(safe) == safe  # idempotent


# --- numbered / deduplicate -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "n", "expected"),
    [
        ("report.pdf", 1, "report (1).pdf"),
        ("report.pdf", 12, "report (12).pdf"),
        ("archive.tar.gz", 1, "archive (1).tar.gz"),
        ("archive.TAR.XZ", 2, "archive (2).TAR.XZ"),
        ("name", 1, "name (1)"),
        (".bashrc", 1, ".bashrc (1)"),
        (".config.json", 1, ".config (1).json"),
        ("v1.2 final", 1, "v1.2 final (1)"),
        ("a.verylongextensionmorethan16", 1, "a.verylongextensionmorethan16 (1)"),
    ],
)
def test_numbered(name: str, n: int, expected: str) -> None:
    assert numbered(name, n) == expected


def test_numbered_stays_within_the_limit() -> None:
    name = safe_filename("x" * 300 + ".pdf")
    alt = numbered(name, 7)
    assert len(alt.encode()) <= MAX_NAME_BYTES and alt.endswith(" (7).pdf")
    with pytest.raises(ValueError):
        numbered("a", 0)


def test_split_extension() -> None:
    assert split_extension("a.tar.gz") == ("a", ".tar.gz")
    assert split_extension("a.tar") == ("a", ".tar")
    assert split_extension("a.b.c") == ("a.b", ".c")
    assert split_extension(".bashrc") == (".bashrc", "")
    assert split_extension("..x") == ("..x", "")
    assert split_extension("plain") == ("plain", "")


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["a.txt", "a.txt", "a (1).txt"], ["a.txt", "a (2).txt", "a (1).txt"]),
        (["a.txt", "A.TXT", "a.txt"], ["a.txt", "A (1).TXT", "a (2).txt"]),
        (["x", "x", "x (1)", "x (2)", "x"], ["x", "x (3)", "x (1)", "x (2)", "x (4)"]),
        (["b.tar.gz", "B.tar.gz"], ["b.tar.gz", "B (1).tar.gz"]),
        (["é.txt", "e\u0301.txt"], ["é.txt", "e\u0301 (1).txt"]),
        ([], []),
    ],
)
def test_deduplicate(names: list[str], expected: list[str]) -> None:
    assert deduplicate(names) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "A", "a (1)", "a.txt", "a (1).txt", "A (2).TXT", "b"])))
def test_deduplicate_properties(names: list[str]) -> None:
    result = deduplicate(names)
    assert len(result) == len(names)
    assert len({r.casefold() for r in result}) == len(result)
    seen: set[str] = set()
    for original, got in zip(names, result, strict=True):
        if original.casefold() not in seen:
            assert got == original  # first occurrences keep their names
        seen.add(original.casefold())


def test_hostile_names_end_up_safe_and_unique() -> None:
    hostile = ["../x", "/abs", "a\\..\\b", "C:x", "CON", "con", "x", "X", "../x", ""]
    result = deduplicate([safe_filename(n) for n in hostile])
    assert result == [
        ".._x",
        "_abs",
        "a_.._b",
        "C_x",
        "_CON",
        "_con (1)",
        "x",
        "X (1)",
        ".._x (1)",
        "download",
    ]


# --- the fast path of safe_filename and deduplicate -----------------------------------

# Printable ASCII, the characters safe_filename replaces, and the ones that decide the
# fast path at the ends of a name (space, dot), so near misses are frequent.
_NEAR_ASCII = st.sampled_from([*map(chr, range(0x20, 0x7F)), " ", ".", "\t", "\x7f", "é"])
_DEVICES = ["CON", "prn", "Aux", "nul", "COM1", "com9", "LPT3", "COM\u00b9", "CONIN$", "conout$"]


def _near_misses() -> st.SearchStrategy[str]:
    """Text that is almost, or just, a plain ASCII name: device names with suffixes,
    spaces and dots at the ends, lengths around the 255-byte limit."""
    plain = st.text(_NEAR_ASCII, max_size=20)
    device = st.builds(
        lambda d, spaces, rest: d + " " * spaces + rest,
        st.sampled_from(_DEVICES),
        st.integers(0, 2),
        st.sampled_from(["", ".", ".txt", ". ", "x", "0", "$", ".tar.gz"]),
    )
    long = st.builds(
        lambda n, ext, end: "a" * n + ext + end,
        st.integers(240, 260),
        st.sampled_from(["", ".txt", ".tar.gz", " x"]),
        st.sampled_from(["", " ", ".", "b"]),
    )
    return st.one_of(plain, device, long, st.text(max_size=300))


@settings(max_examples=1000, deadline=None)
@given(_near_misses(), st.sampled_from(["download", "", "file"]))
def test_the_fast_path_agrees_with_the_general_one(name: str, default: str) -> None:
    assert safe_filename(name, default) == filenames._made_safe(name, default)


def test_plain_ascii_names_skip_the_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def general(name: str, default: str) -> str:
        calls.append(name)
        return "general"

    monkeypatch.setattr(filenames, "_made_safe", general)
    plain = ["file00001.txt", "a b.tar.gz", "x" * 251 + ".txt", ".bashrc", "COM10", "[x]{y}~"]
    assert [safe_filename(n) for n in plain] == plain
    assert calls == []
    others = ["CON.txt", " a", "a ", "a.", "x" * 256, "a:b", "été", "", "lpt1 .x"]
    assert [safe_filename(n) for n in others] == ["general"] * len(others)
    assert calls == others


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=20), st.text(_NEAR_ASCII, max_size=20)))
def test_the_ascii_key_is_the_general_key(name: str) -> None:
    general = unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())
    assert filenames._key(name) == general


def test_is_part_file() -> None:
    job = "0b4a5e0c-1d2e-4f3a-8b9c-0123456789ab"
    assert is_part_file(part_name(job)) and is_part_file(f".{job}.part")
    for name in [f"{job}.part", f".{job}.part.txt", f".{job.upper()}.part", ".x.part", "a.part"]:
        assert not is_part_file(name)
