"""The zip allow list (seed 004) against spellings that try to walk out of a prefix.

A real server is started with one prefix under the recording upstream (``/pub/``, in
several spellings of the prefix itself) and every spelling of :data:`CORPUS` is posted.
Each one is either

* ``REFUSED``: ``403 UNAUTHORIZED_URIS`` naming it, and no request reaches the upstream;
* ``INVALID``: not a URI at all (whitespace, controls, a raw backslash): ``400
  INVALID_URIS``, and no request either;
* a canonical target: admitted, and the upstream saw exactly that request target (the
  URL checked is the URL sent).

Whatever happens, every target the upstream ever recorded must stay under the prefix
even as the most lenient upstream would read it (:func:`worst_case_path`: decode again
and again, fold Unicode, treat ``\\`` as ``/``, drop ``;`` parameters, resolve dot
segments), so a spelling that only looks inside the prefix fails the test too.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

import pytest

from tests.helpers.server import StartServer
from tests.helpers.upstream import Blob, Redirect, Upstream
from tests.helpers.zip import fetch, fetch_partial, post, read_zip
from tests.helpers.zip_allow_corpus import CORPUS, EXACT_PUB, INVALID, REFUSED

FILE = b"the public file\n"
SECRET = b"the private secret\n"


PREFIXES = {
    "/pub/": "{o}/pub/",
    "/pub": "{o}/pub",
    "spelled": "HTTP://127.0.0.1.:{p}/x/../p%75b/./",  # normalised like the URIs: /pub/
}


def expand(template: str, upstream: Upstream) -> str:
    """``template`` with ``{o}`` and ``{p}`` filled in."""
    port = upstream.port
    return template.replace("{o}", f"http://127.0.0.1:{port}").replace("{p}", str(port))


def worst_case_path(target: str) -> str:
    """The path the most lenient upstream could make of a request target: decoded until
    nothing changes (IIS ``%u`` too, overlong UTF-8 read as ASCII), NFKC-folded, ``\\``
    read as ``/``, ``;`` parameters dropped, empty segments merged, dot segments resolved
    (dots-and-spaces-only segments counting as ``..``)."""
    path = target.split("?", 1)[0].split("#", 1)[0]
    for _ in range(10):
        wide = re.sub(r"%[uU]([0-9a-fA-F]{4})", lambda m: chr(int(m[1], 16)), path)
        decoded = unquote(wide, errors="surrogateescape")
        decoded = re.sub("\udcc0\udcae|\udce0\udc80\udcae", ".", decoded)  # overlong dots
        decoded = re.sub("\udcc0\udcaf|\udce0\udc80\udcaf", "/", decoded)
        decoded = unicodedata.normalize("NFKC", decoded).replace("\\", "/")
        if decoded == path:
            break
        path = decoded
    out: list[str] = []
    for segment in path.split("/"):
        name = segment.split(";", 1)[0].rstrip("\x00")
        if not name or name == ".":
            continue
        if not name.strip(". "):
            if out:
                out.pop()
            continue
        out.append(name)
    return "/" + "/".join(out)


def inside_pub(target: str) -> bool:
    """Whether even the worst-case reading of ``target`` stays under ``/pub``."""
    path = worst_case_path(target)
    return path == "/pub" or path.startswith("/pub/")


def test_the_corpus_is_large_and_varied() -> None:
    assert len(CORPUS) >= 40
    assert len({spelling for spelling, _ in CORPUS}) == len(CORPUS)
    outcomes = {o if o in (REFUSED, INVALID) else "admitted" for _, o in CORPUS}
    assert outcomes == {REFUSED, INVALID, "admitted"}


@pytest.mark.parametrize(
    ("target", "inside"),
    [
        ("/pub/file.txt", True),
        ("/pub/%2e%2e/priv", False),
        ("/pub/%252e%252e/priv", False),
        ("/pub/..;/priv", False),
        ("/pub/%c0%ae%c0%ae/priv", False),
        ("/pub/%EF%BC%8E%EF%BC%8E/priv", False),
        ("/pub/..%5Cpriv", False),
        ("/pub/%u002e%u002e/priv", False),
        ("/pub/.../priv", False),
        ("/public/x", False),
        ("/pub", True),
        ("/pub//a/./b", True),
    ],
)
def test_the_worst_case_reader_itself(target: str, inside: bool) -> None:
    assert inside_pub(target) is inside


def serve_everything(upstream: Upstream) -> None:
    """Resources at every path the corpus could reach (so a leak would be a 303)."""
    for path in ["/pub/file.txt", "/pub/", "/pub", "/pub//file.txt", "/pub/a%2Fb.txt"]:
        upstream.add(path, Blob(FILE))
    for path in ["/priv/secret.txt", "/public/x.txt", "/", "/x.txt"]:
        upstream.add(path, Blob(SECRET))


@pytest.mark.parametrize("prefix_name", list(PREFIXES))
async def test_no_spelling_leaves_the_prefix(
    start_server: StartServer, upstream: Upstream, prefix_name: str
) -> None:
    serve_everything(upstream)
    served = await start_server(zip_allow_prefixes=[expand(PREFIXES[prefix_name], upstream)])
    failures: list[str] = []
    for template, outcome in CORPUS:
        if outcome == EXACT_PUB:
            outcome = "/pub" if prefix_name == "/pub" else REFUSED
        uri = expand(template, upstream)
        upstream.reset()
        response = await post(served, document={"fs_uri_list": [uri]})
        seen = [r.target for r in upstream.requests]
        body = response.json() if response.status_code != 303 else {}
        if outcome in (REFUSED, INVALID):
            status, key = (
                (403, "UNAUTHORIZED_URIS") if outcome == REFUSED else (400, "INVALID_URIS")
            )
            got = (response.status_code, body.get("fs_error_key"), body.get("fs_error_records"))
            if got != (status, key, [uri]) or seen:
                failures.append(f"{uri!r}: expected {key}, got {got}, upstream saw {seen}")
        elif response.status_code != 303 or seen != [outcome]:
            failures.append(f"{uri!r}: expected 303 sending {outcome!r}, got {response.status_code}"
                            f" {body}, upstream saw {seen}")  # fmt: skip
        outside = [target for target in seen if not inside_pub(target)]
        if outside:
            failures.append(f"{uri!r}: the upstream was asked for {outside}")
    assert not failures, "\n".join(failures)


async def test_probes_member_reads_and_background_crc_reads_send_the_checked_url(
    start_server: StartServer, upstream: Upstream
) -> None:
    """Every request of a manifest (the probe, member reads for a 200, ranged reads for
    a resume, the background CRC reads it needs) goes to the canonical URL checked."""
    first = bytes(range(256)) * 300
    member = bytes(reversed(first))
    upstream.add("/pub/dir/first.bin", Blob(first))
    upstream.add("/pub/dir/sp~ce%20n%C3%A4me.bin", Blob(member, etag=None, last_modified=None))
    served = await start_server(zip_allow_prefixes=[upstream.url("/pub/")])
    spellings = [
        expand("HTTP://127.0.0.1.:{p}/pub/x/%2E%2E/dir/./first.bin#frag", upstream),
        expand("{o}/p%75b/dir/sp%7ece%20n\u00e4me.bin", upstream),
    ]
    canonical = {"/pub/dir/first.bin", "/pub/dir/sp~ce%20n%C3%A4me.bin"}
    response = await post(served, document={"fs_uri_list": spellings})
    assert response.status_code == 303, response.text
    path = response.headers["location"]
    # A resume from the middle of the second member first: its descriptor and the
    # central directory need both CRCs, computed by background ranged reads.
    partial = await fetch_partial(served, path, Range=f"bytes={len(first) + 200}-")
    assert partial.status == 206 and partial.complete
    whole = await fetch(served, path)
    assert whole.status_code == 200
    assert sorted(read_zip(whole.content).values()) == sorted([first, member])
    assert len(upstream.requests) >= 5
    assert {r.target for r in upstream.requests} == canonical
    ranged = [r for r in upstream.requests if r.header("range") not in (None, "bytes=0-0")]
    assert ranged, "no ranged member or CRC read happened"


async def test_redirect_hops_are_judged_like_the_first_one(
    start_server: StartServer, upstream: Upstream
) -> None:
    upstream.add("/priv/secret.txt", Blob(SECRET))
    upstream.add("/pub/..;/priv/secret.txt", Blob(SECRET))
    upstream.add("/pub/file.txt", Blob(FILE))
    hops = {
        "/pub/r1": "/pub/%2e%2e/priv/secret.txt",
        "/pub/r2": "/pub/..;/priv/secret.txt",
        "/pub/r3": "/pub/%252e%252e/priv/secret.txt",
        "/pub/r4": "/pub/a/../file.txt",
    }
    for source, location in hops.items():
        upstream.add(source, Redirect(location))
    served = await start_server(zip_allow_prefixes=[upstream.url("/pub/")])
    uris = [upstream.url(source) for source in hops]
    response = await post(served, document={"fs_uri_list": uris})
    assert response.status_code == 502
    assert response.json()["fs_error_records"] == uris[:3]
    assert sorted(r.target for r in upstream.requests) == sorted([*hops, "/pub/file.txt"])


async def test_two_spellings_of_one_uri_are_duplicates(
    start_server: StartServer, upstream: Upstream
) -> None:
    uri = upstream.add("/pub/file.txt", Blob(FILE))
    served = await start_server(zip_allow_prefixes=[upstream.url("/pub/")])
    other = expand("{o}/pub/./file.txt", upstream)
    response = await post(served, document={"fs_uri_list": [uri, other]})
    assert response.status_code == 400
    assert response.json()["fs_error_key"] == "DUPLICATE_URIS"
    assert response.json()["fs_error_records"] == [other]
    assert upstream.requests == []
