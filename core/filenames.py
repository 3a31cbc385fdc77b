r"""File names taken from the outside world, made safe (pure, no I/O).

Remote downloads and zip members are named after what an upstream says
(``Content-Disposition``) or, failing that, after the URL.  Those names are hostile
input: this module extracts them (:func:`disposition_filename`, :func:`url_filename`),
turns one into a single safe path component (:func:`safe_filename`) and makes a list of
them unique the way desktop file managers do (:func:`numbered`, :func:`deduplicate`).
It also names the hidden ``.part`` file a remote download streams into
(:func:`part_name`), which listings and directory zips leave out (:func:`is_part_file`).

A safe name is safe on Linux, macOS and Windows alike: no separators (``/`` ``\``),
no control characters, none of Windows' forbidden characters (``< > : " | ? *``, which
also neutralises drive letters such as ``C:x`` and NTFS streams such as ``a::$DATA``),
no trailing dots or spaces, not a Windows device name (``CON``, ``nul.txt``, ``COM1``,
...), NFC-normalised and at most :data:`MAX_NAME_BYTES` bytes of UTF-8.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Final
from urllib.parse import unquote, unquote_to_bytes, urlsplit

__all__ = [
    "DEVICE_PREFIXES",
    "MAX_NAME_BYTES",
    "PART_SUFFIX",
    "PLAIN_BYTES",
    "deduplicate",
    "disposition_filename",
    "is_part_file",
    "numbered",
    "part_name",
    "safe_filename",
    "split_extension",
    "url_filename",
]

#: Longest safe name in UTF-8 bytes (``NAME_MAX`` of common filesystems).
MAX_NAME_BYTES: Final = 255

# RFC 9110 token characters (header names, parameter names, unquoted values).
_TOKEN: Final = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED: Final = r'"(?:[^"\\]|\\.)*"?'  # a missing closing quote is tolerated
_PARAM: Final = re.compile(rf"\s*({_TOKEN})\s*=\s*({_QUOTED}|[^;]*)\s*(?:;|$)", re.DOTALL)
_QUOTED_PAIR: Final = re.compile(r"\\(.)", re.DOTALL)
_EXT_VALUE: Final = re.compile(r"([A-Za-z0-9!#$%&+^_`{}~-]*)'[^']*'(.*)", re.DOTALL)

# C0/C1 controls, DEL, lone surrogates, separators and Windows' forbidden characters.
_UNSAFE: Final = re.compile('[\x00-\x1f\x7f-\x9f\ud800-\udfff/\\\\<>:"|?*]')
_RESERVED: Final = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{dev}{n}" for dev in ("COM", "LPT") for n in "123456789\u00b9\u00b2\u00b3"]
)
# The names safe_filename returns unchanged without normalising them: printable ASCII
# without an _UNSAFE character, no leading space, no trailing space or dot, at most
# MAX_NAME_BYTES long (ASCII is one byte a character and already NFC), not a device
# name.  _NOT_PLAIN finds any other character; it is derived from _UNSAFE so the two
# cannot disagree (a search for it is cheaper than a regex with lookarounds at the ends).
_PLAIN_CHARS: Final = "".join(
    re.escape(c) for c in map(chr, range(0x20, 0x7F)) if _UNSAFE.match(c) is None
)
_NOT_PLAIN: Final = re.compile(f"[^{_PLAIN_CHARS}]")
# What an ASCII device name starts with (a cheaper first test than _is_reserved).
_DEVICE_PREFIXES: Final = frozenset(name[:3] for name in _RESERVED)
PLAIN_BYTES: Final = bytes(
    int(0x20 <= c < 0x7F and _UNSAFE.match(chr(c)) is None) for c in range(256)
)
"""One byte per byte value: 1 for the ASCII characters a name :func:`safe_filename`
returns unchanged may hold anywhere (a name's first and last character have more
rules), 0 for the others."""
DEVICE_PREFIXES: Final = tuple(sorted(prefix.encode("ascii") for prefix in _DEVICE_PREFIXES))
"""What a Windows device name starts with, upper-case ASCII bytes: a name starting so
(ignoring case) may not be returned unchanged by :func:`safe_filename`."""
# An extension: a final dot-suffix of 1-16 characters without dots or whitespace; a
# ".tar" just before it joins it (".tar.gz").  Leading dots never start one (".bashrc").
_EXTENSION: Final = re.compile(r"(?<=[^.])((?:\.[Tt][Aa][Rr])?\.[^.\s]{1,16})$")


def _unquote_param(raw: str) -> str:
    if raw.startswith('"'):
        inner = raw[1:-1] if len(raw) > 1 and raw.endswith('"') else raw[1:]
        return _QUOTED_PAIR.sub(r"\1", inner)
    return raw.strip()


def _decode_ext_value(raw: str) -> str | None:
    """RFC 8187 ``charset'lang'pct-encoded``; UTF-8 and ISO-8859-1 only."""
    match = _EXT_VALUE.fullmatch(_unquote_param(raw))
    if match is None:
        return None
    charset = match.group(1).lower()
    if charset not in ("utf-8", "iso-8859-1", "latin1"):
        return None
    try:
        return unquote_to_bytes(match.group(2)).decode(charset)
    except UnicodeDecodeError:
        return None


def disposition_filename(value: str) -> str | None:
    """The file name a ``Content-Disposition`` header value carries, or ``None``.

    ``filename*`` (RFC 6266 / RFC 8187, UTF-8 or ISO-8859-1, percent-encoded) wins over
    ``filename``, which may be a quoted string (``\\`` escapes undone) or a token.
    Parameter names are case-insensitive; the disposition type is not checked (an
    ``inline`` answer names its file too).  Returns ``None`` when no usable name is
    present.  The name is returned as sent: pass it through :func:`safe_filename`.
    """
    _, _, params = value.partition(";")
    if "=" in value.partition(";")[0]:  # no disposition type: the parameters start at once
        params = value
    plain: str | None = None
    extended: str | None = None
    pos = 0
    while pos < len(params):
        match = _PARAM.match(params, pos)
        if match is None:  # skip a malformed piece up to the next ';'
            nxt = params.find(";", pos)
            if nxt < 0:
                break
            pos = nxt + 1
            continue
        pos = match.end()
        name, raw = match.group(1).lower(), match.group(2).strip()
        if name == "filename*" and extended is None:
            extended = _decode_ext_value(raw)
        elif name == "filename" and plain is None:
            plain = _unquote_param(raw)
    for candidate in (extended, plain):
        if candidate:
            return candidate
    return None


def url_filename(url: str) -> str | None:
    """The last non-empty path segment of ``url``, percent-decoded (UTF-8), or ``None``.

    The query and fragment are ignored; ``https://h/a/b.pdf?x=1`` gives ``b.pdf`` and
    ``https://h/`` gives ``None``.  Invalid UTF-8 becomes U+FFFD.
    """
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    for segment in reversed(path.split("/")):
        if segment:
            return unquote(segment, errors="replace") or None
    return None


def split_extension(name: str) -> tuple[str, str]:
    """``("archive", ".tar.gz")``, ``("report", ".pdf")``, ``(".bashrc", "")``.

    The extension is the last dot-suffix of 1-16 characters without dots or whitespace
    (``.tar.X`` counts as one); a name made of a leading-dot part only has none.
    """
    match = _EXTENSION.search(name)
    if match is None:
        return name, ""
    return name[: match.start()], match.group(1)


def _truncate_utf8(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding fits ``limit`` bytes."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[: max(limit, 0)].decode("utf-8", errors="ignore")


def _fit(stem: str, suffix: str) -> str:
    """``stem + suffix`` cut to :data:`MAX_NAME_BYTES`, shortening the stem first."""
    budget = MAX_NAME_BYTES - len(suffix.encode("utf-8"))  # suffixes are < 100 bytes
    cut = _truncate_utf8(stem, budget)
    return (cut.rstrip(" ") if cut != stem else cut) + suffix


def safe_filename(name: str, default: str = "download") -> str:
    """``name`` made into one path component that is safe on every common OS.

    NFC-normalised; ``/``, ``\\``, control characters and ``< > : " | ? *`` become
    ``_``; surrounding whitespace and trailing dots are stripped (so ``.``, ``..`` and
    dots-only names are empty); a Windows device name (``CON``, ``com1.txt``, ...) gets
    a ``_`` prefix; longer than 255 UTF-8 bytes it is cut, keeping the extension.
    An empty result gives ``default`` (which should itself be safe).
    """
    # The common case first (a plain ASCII name, e.g. every file of a directory zip):
    # the general path would return it unchanged, at five times the cost.  Inline, as
    # this runs once per member of a zip.
    if (
        0 < len(name) <= MAX_NAME_BYTES
        and _NOT_PLAIN.search(name) is None
        and name[0] != " "
        and name[-1] not in ". "
        and (name[:3].upper() not in _DEVICE_PREFIXES or not _is_reserved(name))
    ):
        return name
    return _made_safe(name, default)


def _is_reserved(name: str) -> bool:
    """Whether ``name`` is a Windows device name, maybe with an extension (``nul.txt``)."""
    return name.split(".", 1)[0].rstrip(" ").upper() in _RESERVED


def _strip_ends(name: str) -> str:
    """``name`` without surrounding whitespace nor trailing dots, in any mix: ``a\xa0.``
    gives ``a`` (``strip().rstrip(". ")`` left ``a\xa0``, which is not safe by the same
    rule, so a second call changed it).  Linear: no regex to backtrack."""
    name = name.strip()
    while name.endswith("."):
        name = name.rstrip(".").rstrip()
    return name


def _made_safe(name: str, default: str) -> str:
    """:func:`safe_filename` without its fast path for plain ASCII names."""
    name = _UNSAFE.sub("_", unicodedata.normalize("NFC", name))
    name = _strip_ends(name)
    if not name:
        return default
    if _is_reserved(name):
        name = "_" + name
    stem, ext = split_extension(name)
    name = _strip_ends(_fit(stem, ext))
    return name or default


def numbered(name: str, n: int) -> str:
    """The ``n``-th alternative to ``name``: ``report (1).pdf``, ``archive (2).tar.gz``.

    A name without an extension (or a dotfile) gets the suffix at the end: ``name (1)``,
    ``.bashrc (1)``.  The result stays within :data:`MAX_NAME_BYTES` (the stem is cut).
    ``n`` must be positive.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, not {n}")
    stem, ext = split_extension(name)
    return _fit(stem, f" ({n}){ext}")


def _key(name: str) -> str:
    """Case- and normalisation-insensitive comparison key of a name."""
    if name.isascii():  # the same key: ASCII is NFC, and its casefold is its lower()
        key = name.lower()
        return name if key == name else key  # no second copy kept of a lower-case name
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def deduplicate(names: Sequence[str]) -> list[str]:
    """``names`` made unique, ignoring case, by numbering repeats with :func:`numbered`.

    Stable: the first occurrence of a name keeps it, later ones become ``name (1).ext``,
    ``name (2).ext``...  A generated name never equals (ignoring case) any name of the
    input, wherever it appears, so ``["a.txt", "a.txt", "a (1).txt"]`` gives
    ``["a.txt", "a (2).txt", "a (1).txt"]``.
    """
    keys = [_key(name) for name in names]
    originals = set(keys)
    if len(originals) == len(keys):  # already unique (the common case): nothing to number
        return list(names)
    taken: set[str] = set()
    next_n: dict[str, int] = {}
    result: list[str] = []
    for name, key in zip(names, keys, strict=True):
        if key not in taken:
            taken.add(key)
            result.append(name)
            continue
        n = next_n.get(key, 1)
        while True:
            candidate = numbered(name, n)
            ckey = _key(candidate)
            n += 1
            if ckey not in taken and ckey not in originals:
                break
        next_n[key] = n
        taken.add(ckey)
        result.append(candidate)
    return result


# --- the .part files of remote downloads ---------------------------------------------

PART_SUFFIX = ".part"


def part_name(job_id: str) -> str:
    """The hidden ``.part`` file name of job ``job_id`` (beside its target)."""
    return f".{job_id}{PART_SUFFIX}"


_PART_NAME = re.compile(r"\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.part")


def is_part_file(name: str) -> bool:
    """Whether ``name`` is a running (or interrupted) job's ``.part`` file."""
    return name.endswith(PART_SUFFIX) and _PART_NAME.fullmatch(name) is not None
