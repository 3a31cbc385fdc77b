r"""Validation of client-supplied relative paths (pure, no I/O).

:func:`safe_relative_path` turns a path taken from a request (already percent-decoded
once by the query parser) into the tuple of its segments, or raises
:class:`~slipstream.errors.PathNotAllowed`.  It is deliberately stricter than any one
filesystem needs: the path is refused if *any* of the ways other software might read
it could escape the base directory.  The forms inspected are the closure of the path
under three operations, up to :data:`MAX_DECODE_ROUNDS` rounds of decoding:

* *split*: ``/`` and ``\`` are both separators; ``.`` and empty segments are dropped;
* *NFKC*: Unicode compatibility normalisation, so lookalikes such as U+FF0E FULLWIDTH
  FULL STOP or U+2024 ONE DOT LEADER count as ``.``, and a fullwidth ``%2e``
  (U+FF05 U+FF12 U+FF45) as ``%2e``;
* *percent-decoding* with strict UTF-8, which exposes double- and triple-encoded
  ``..``, ``/`` and NUL, and refuses overlong sequences such as ``%c0%ae``.

Every form must be free of control characters, lone surrogates and U+FFFD, must not be
absolute (``/x``, ``\x``, UNC ``\\host\share``) or start with a drive (``C:``), and
must have no segment made only of two or more dots (and spaces, as Windows trims
them).  A character that normalises to ``/`` or ``\`` (U+FF0F, U+FF3C, ...) is refused
wherever it appears.  The segments returned are those of the path as given; the other
forms are only inspected, never used to name a file.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from urllib.parse import unquote_to_bytes

from slipstream.errors import PathNotAllowed

__all__ = [
    "MAX_DECODE_ROUNDS",
    "MAX_PATH_BYTES",
    "MAX_SEGMENT_BYTES",
    "safe_relative_path",
]

#: How many rounds of percent-decoding are inspected; a path that would still change
#: after that many rounds is refused outright.
MAX_DECODE_ROUNDS = 4
#: Longest accepted path, in UTF-8 bytes (Linux ``PATH_MAX``).
MAX_PATH_BYTES = 4096
#: Longest accepted segment, in UTF-8 bytes (``NAME_MAX`` of common filesystems).
MAX_SEGMENT_BYTES = 255
#: Longest form inspected (NFKC can expand a character up to 18 times).
_MAX_FORM_CHARS = 4 * MAX_PATH_BYTES

_SEPARATORS = re.compile(r"[/\\]")
# Cc (C0 and C1 controls, NUL included), lone surrogates, U+FFFD REPLACEMENT CHARACTER.
_BAD_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffd]")
_DRIVE = re.compile(r"[A-Za-z]:")
_DOT_RUN = re.compile(r"(?:^|[/\\])(?=[. ]*\.[. ]*\.)[. ]+(?:$|[/\\])")


@functools.lru_cache(maxsize=1024)  # accepted paths only (a refusal raises); <= 4 MiB held
def safe_relative_path(user_path: str) -> tuple[str, ...]:
    r"""Split ``user_path`` into its segments, refusing anything that could escape.

    ``"."`` and empty segments are dropped (``"a//./b"`` -> ``("a", "b")``), so ``"."``
    gives ``()``, meaning the base itself; backslashes separate too (``"a\b"`` ->
    ``("a", "b")``).  Raises :class:`PathNotAllowed` for an empty path and for anything
    described in the module docstring, and for paths over :data:`MAX_PATH_BYTES` or
    segments over :data:`MAX_SEGMENT_BYTES` (UTF-8).
    """
    if not isinstance(user_path, str) or not user_path:
        raise PathNotAllowed()
    if len(user_path.encode("utf-8", errors="surrogatepass")) > MAX_PATH_BYTES:
        raise PathNotAllowed()
    _inspect(user_path)
    segments = _split(user_path)
    if any(len(seg.encode("utf-8")) > MAX_SEGMENT_BYTES for seg in segments):
        raise PathNotAllowed()
    return segments


def _split(form: str) -> tuple[str, ...]:
    return tuple(seg for seg in _SEPARATORS.split(form) if seg not in ("", "."))


def _inspect(path: str) -> None:
    """Check every form reachable from ``path`` (see the module docstring)."""
    seen: set[str] = set()
    frontier = {path}
    for round_no in range(MAX_DECODE_ROUNDS + 1):
        decoded_forms: set[str] = set()
        for form in frontier:
            for view in _views(form):
                if view in seen:
                    continue
                seen.add(view)
                _check_form(view)
                decoded = _percent_decode(view)
                if decoded != view:
                    decoded_forms.add(decoded)
        if not decoded_forms:
            return
        if round_no == MAX_DECODE_ROUNDS:
            raise PathNotAllowed()  # still changing: nobody names a file like that
        frontier = decoded_forms


def _views(form: str) -> set[str]:
    """``form`` closed under *split* (re-joined with ``/``) and NFKC."""
    views = {form}
    todo = [form]
    while todo:
        current = todo.pop()
        for view in ("/".join(_split(current)), unicodedata.normalize("NFKC", current)):
            if len(view) > _MAX_FORM_CHARS:
                raise PathNotAllowed()
            if view not in views:
                views.add(view)
                todo.append(view)
    return views


def _percent_decode(text: str) -> str:
    """One round of percent-decoding with strict UTF-8 (invalid / overlong -> refused)."""
    if "%" not in text:
        return text
    try:
        return unquote_to_bytes(text).decode("utf-8", errors="strict")
    except UnicodeError:
        raise PathNotAllowed() from None


def _check_form(form: str) -> None:
    if _BAD_CHARS.search(form):
        raise PathNotAllowed()
    if form.startswith(("/", "\\")) or _DRIVE.match(form):
        raise PathNotAllowed()  # absolute, UNC (\\host\share, //host/share) or drive
    if _DOT_RUN.search(form):
        raise PathNotAllowed()  # "..", and "...", ".. " which Windows trims to ".."
    if not form.isascii():
        normalized = unicodedata.normalize("NFKC", form)
        if len(_SEPARATORS.findall(normalized)) != len(_SEPARATORS.findall(form)):
            raise PathNotAllowed()  # a lookalike separator
