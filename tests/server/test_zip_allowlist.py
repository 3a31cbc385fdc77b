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

from tests.server.conftest import StartServer
from tests.server.test_zip_service import fetch, fetch_partial, post, read_zip
from tests.upstream import Blob, Redirect, Upstream

REFUSED = "refused"
INVALID = "invalid"
EXACT_PUB = "exact /pub"
"""``{o}/pub`` itself: admitted by the prefix ``/pub``, refused by ``/pub/``."""

FILE = b"the public file\n"
SECRET = b"the private secret\n"

#: (spelling, outcome).  ``{o}`` is ``http://127.0.0.1:PORT``, ``{p}`` the port.
CORPUS: list[tuple[str, str]] = [
    # dot segments, raw and percent-encoded: normalised, then judged
    ("{o}/pub/../priv/secret.txt", REFUSED),
    ("{o}/pub/./../priv/secret.txt", REFUSED),
    ("{o}/pub/%2e%2e/priv/secret.txt", REFUSED),
    ("{o}/pub/%2E%2e/priv/secret.txt", REFUSED),
    ("{o}/pub/.%2e/priv/secret.txt", REFUSED),
    ("{o}/pub/%2e./priv/secret.txt", REFUSED),
    ("{o}/pub/../public/x.txt", REFUSED),
    ("{o}/pub/../pub/file.txt", "/pub/file.txt"),
    ("{o}/pub/./file.txt", "/pub/file.txt"),
    ("{o}/pub/%2e/file.txt", "/pub/file.txt"),
    ("{o}/pub/a/../file.txt", "/pub/file.txt"),
    ("{o}/pub/a/%2e%2e/file.txt", "/pub/file.txt"),
    ("{o}/pub/a/b/.%2E/../file.txt", "/pub/file.txt"),
    ("{o}/pub/file.txt/..", "/pub/"),
    # encoded slashes and backslashes that could still form a dot segment
    ("{o}/pub/..%2fpriv/secret.txt", REFUSED),
    ("{o}/pub/..%2Fpriv/secret.txt", REFUSED),
    ("{o}/pub/%2f..%2fpriv/secret.txt", REFUSED),
    ("{o}/pub%2f..%2fpriv/secret.txt", REFUSED),
    ("{o}/pub/..%5cpriv/secret.txt", REFUSED),
    ("{o}/pub/%5c..%5cpriv%5csecret.txt", REFUSED),
    ("{o}/pub/a%2Fb.txt", "/pub/a%2Fb.txt"),
    ("{o}/pub\\..\\priv\\secret.txt", INVALID),
    ("{o}/pub/..\\priv/secret.txt", INVALID),
    # path parameters (Tomcat), double and triple encoding, IIS %u, nested escapes
    ("{o}/pub/..;/priv/secret.txt", REFUSED),
    ("{o}/pub/..;x=1/priv/secret.txt", REFUSED),
    ("{o}/pub/%2e%2e;/priv/secret.txt", REFUSED),
    ("{o}/pub/%252e%252e/priv/secret.txt", REFUSED),
    ("{o}/pub/%25252e%25252e/priv/secret.txt", REFUSED),
    ("{o}/pub/%252e%252e%252fpriv/secret.txt", REFUSED),
    ("{o}/pub/%%32%65%%32%65/priv/secret.txt", REFUSED),
    ("{o}/pub/%u002e%u002e/priv/secret.txt", REFUSED),
    # overlong UTF-8 and Unicode look-alikes
    ("{o}/pub/%c0%ae%c0%ae/priv/secret.txt", REFUSED),
    ("{o}/pub/%C0%AE%C0%AE%C0%AFpriv/secret.txt", REFUSED),
    ("{o}/pub/%e0%80%ae%e0%80%ae/priv/secret.txt", REFUSED),
    ("{o}/pub/\uff0e\uff0e/priv/secret.txt", REFUSED),  # full-width dots
    ("{o}/pub/%ef%bc%8e%ef%bc%8e/priv/secret.txt", REFUSED),
    ("{o}/pub/\u2025/priv/secret.txt", REFUSED),  # two dot leader
    ("{o}/pub/\uff0e\uff0e\uff0fpriv/secret.txt", REFUSED),  # and a full-width solidus
    # dots and spaces a Windows upstream trims, encoded controls
    ("{o}/pub/.../priv/secret.txt", REFUSED),
    ("{o}/pub/..%20/priv/secret.txt", REFUSED),
    ("{o}/pub/..%00/priv/secret.txt", REFUSED),
    ("{o}/pub/file.txt%00.jpg", REFUSED),
    # segment boundary and case
    ("{o}/public/x.txt", REFUSED),
    ("{o}/pub", EXACT_PUB),
    ("{o}/PUB/file.txt", REFUSED),
    ("{o}/p%75b/file.txt", "/pub/file.txt"),
    ("{o}/%70%75%62/file.txt", "/pub/file.txt"),
    ("{o}//pub/file.txt", REFUSED),
    ("{o}/pub//file.txt", "/pub//file.txt"),
    # scheme, host and port spellings
    ("HTTP://127.0.0.1:{p}/pub/file.txt", "/pub/file.txt"),
    ("hTtP://127.0.0.1.:{p}/pub/file.txt", "/pub/file.txt"),  # trailing-dot host
    ("{o}/pub/file.txt?", "/pub/file.txt"),
    ("http://127.0.0.1:80/pub/file.txt", REFUSED),
    ("https://127.0.0.1:{p}/pub/file.txt", REFUSED),
    ("http://localhost:{p}/pub/file.txt", REFUSED),
    ("http://127.1:{p}/pub/file.txt", REFUSED),
    ("http://2130706433:{p}/pub/file.txt", REFUSED),
    ("http://[::ffff:127.0.0.1]:{p}/pub/file.txt", REFUSED),
    ("http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54:{p}/pub/file.txt", REFUSED),
    # userinfo, fragments and queries
    ("http://user@127.0.0.1:{p}/pub/file.txt", REFUSED),
    ("http://127.0.0.1:{p}@evil.example/pub/file.txt", REFUSED),
    ("http://evil.example#@127.0.0.1:{p}/pub/file.txt", REFUSED),
    ("{o}/pub/file.txt#/../../priv/secret.txt", "/pub/file.txt"),
    ("{o}/pub/file.txt?x=../../priv/secret.txt", "/pub/file.txt?x=../../priv/secret.txt"),
    ("{o}/pub/?x=../", "/pub/?x=../"),
    ("{o}?/pub/file.txt", REFUSED),
    ("{o}/priv/secret.txt?/pub/file.txt", REFUSED),
    ("{o}/priv/secret.txt#/pub/file.txt", REFUSED),
    # tabs, newlines and other whitespace inside the URL
    ("{o}/pub/..\t/priv/secret.txt", INVALID),
    ("{o}/pu\nb/../priv/secret.txt", INVALID),
    ("{o}/pub/\r\n../priv/secret.txt", INVALID),
    ("{o}/pub/.. /priv/secret.txt", INVALID),
]

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
