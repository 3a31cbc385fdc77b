"""The presigned ``GET /s/{space}/{path}`` route and :meth:`UrlIssuer.issue`."""

from __future__ import annotations

import base64
import email
import hashlib
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import httpx
import pytest

from slipstream.http.disposition import content_disposition
from slipstream.presign import Signer
from slipstream.server import App
from tests.helpers.clock import FakeClock
from tests.helpers.presigned import issue, urls_of
from tests.helpers.raw_http import get
from tests.helpers.server import NON_ASCII_NAME, SECRET, Served, StartServer

TAMPERED = {"error": "signature does not match"}
EXPIRED = {"error": "URL expired"}
CHANGED = {"error": "file changed since the URL was issued"}


def signed_target(
    signer: Signer, space: str, path: str, *, expires: int | None = None, etag: str = '"x"'
) -> str:
    """A request target for a grant signed directly (bypassing ``UrlIssuer.issue``'s checks)."""
    params = signer.sign(space, path, expires=expires or int(time.time()) + 600, etag=etag)
    quoted = "/".join(quote(segment, safe="") for segment in path.split("/"))
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    return f"/s/{space}/{quoted}?{query}"


def with_param(url: str, name: str, value: str) -> str:
    """``url`` with query parameter ``name`` replaced by ``value``."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    query[name] = value
    encoded = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
    return parts._replace(query=encoded).geturl()


async def fetch(served: Served, url: str, method: str = "GET", **kwargs: Any) -> httpx.Response:
    async with served.client() as client:
        return await client.request(method, url, **kwargs)


async def raw_get(served: Served, target: str, *headers: str, method: str = "GET") -> Any:
    client = await served.raw()
    try:
        await client.send(get(target, *headers, method=method))
        return await client.read_response(method)
    finally:
        await client.aclose()


# --- issuing -----------------------------------------------------------------------------


async def test_issued_url_has_the_documented_form(served: Served) -> None:
    url = issue(served, "subdir/inner.txt")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == served.base
    assert parts.path == "/s/root/subdir/inner.txt"
    query = parse_qs(parts.query)
    assert sorted(query) == ["etag", "expires", "sig"]
    assert query["etag"] == [urls_of(served).spaces["root"].stat("subdir/inner.txt").etag]
    assert int(query["expires"][0]) > time.time()
    assert base64.urlsafe_b64decode(query["sig"][0] + "=")


async def test_public_url_and_base_set_the_url_origin(start_server: StartServer) -> None:
    served = await start_server(public_url="https://files.example.com/prefix/")
    url = issue(served, "small.txt")
    assert url.startswith("https://files.example.com/prefix/s/root/small.txt?")
    url = issue(served, "small.txt", base="http://cdn.example.net")
    assert url.startswith("http://cdn.example.net/s/root/small.txt?")


async def test_urls_issued_with_one_clock_reading_share_their_expiry(served: Served) -> None:
    urls = urls_of(served)
    now = time.time()
    with urls.spaces["root"].open("small.txt") as opened:
        first, first_expires = urls.issue("root", opened, expires_in=60, now=now)
        second, second_expires = urls.issue(
            "root", opened, expires_in=60, now=now, base="http://cdn.example.net"
        )
    assert first_expires == second_expires == int(now) + 60
    assert urlsplit(first).query == urlsplit(second).query


async def test_issue_refuses_unknown_spaces_and_short_lives(served: Served) -> None:
    urls = urls_of(served)
    with urls.spaces["root"].open("small.txt") as opened:
        with pytest.raises(ValueError):
            urls.issue("app-missing", opened, expires_in=60)
        with pytest.raises(ValueError):
            urls.issue("root", opened, expires_in=0)


# --- a full file route -------------------------------------------------------------------


async def test_get_serves_the_file_without_a_token(served: Served) -> None:
    data = served.files["random.bin"]
    response = await fetch(served, issue(served, "random.bin"))
    assert response.status_code == 200
    assert response.content == data
    h = response.headers
    assert h["content-length"] == str(len(data))
    assert h["content-type"] == "application/octet-stream"
    assert h["content-disposition"] == 'attachment; filename="random.bin"'
    assert h["accept-ranges"] == "bytes"
    assert h["etag"] == urls_of(served).spaces["root"].stat("random.bin").etag


async def test_small_files_carry_integrity_headers(served: Served) -> None:
    data = served.files["medium.bin"]
    response = await fetch(served, issue(served, "medium.bin"))
    assert response.content == data
    expected = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert response.headers["repr-digest"] == f"sha-256=:{expected}:"


async def test_head_has_the_get_headers_and_no_body(served: Served) -> None:
    url = issue(served, "small.txt")
    head = await fetch(served, url, "HEAD")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(served.files["small.txt"]))
    assert head.headers["content-type"] == "text/plain"
    assert head.headers["etag"] == (await fetch(served, url)).headers["etag"]


async def test_single_range_and_if_range(served: Served) -> None:
    data = served.files["random.bin"]
    url = issue(served, "random.bin")
    response = await fetch(served, url, headers={"Range": "bytes=1000-1999"})
    assert response.status_code == 206
    assert response.content == data[1000:2000]
    assert response.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    assert response.headers["content-digest"].startswith("sha-256=:")
    etag = response.headers["etag"]
    resumed = await fetch(served, url, headers={"Range": "bytes=-10", "If-Range": etag})
    assert resumed.status_code == 206 and resumed.content == data[-10:]
    stale = await fetch(served, url, headers={"Range": "bytes=-10", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == data


async def test_multipart_ranges(served: Served) -> None:
    data = served.files["medium.bin"]
    response = await fetch(
        served, issue(served, "medium.bin"), headers={"Range": "bytes=0-9,100-109"}
    )
    assert response.status_code == 206
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + response.content
    )
    parts = [part.get_payload(decode=True) for part in message.get_payload()]  # type: ignore[union-attr]
    assert parts == [data[0:10], data[100:110]]


async def test_conditional_requests_and_unsatisfiable_ranges(served: Served) -> None:
    url = issue(served, "small.txt")
    etag = (await fetch(served, url, "HEAD")).headers["etag"]
    assert (await fetch(served, url, headers={"If-None-Match": etag})).status_code == 304
    unsatisfiable = await fetch(served, url, headers={"Range": "bytes=99999-"})
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == f"bytes */{len(served.files['small.txt'])}"


async def test_no_size_limit_on_signed_urls(start_server: StartServer) -> None:
    served = await start_server(max_download_size=1000)
    response = await fetch(served, issue(served, "medium.bin"))
    assert response.status_code == 200
    assert response.content == served.files["medium.bin"]


async def test_empty_file_is_served(served: Served) -> None:
    response = await fetch(served, issue(served, "empty.txt"))
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "0"


async def test_non_ascii_path(served: Served) -> None:
    url = issue(served, NON_ASCII_NAME)
    assert quote(NON_ASCII_NAME, safe="") in url
    response = await fetch(served, url)
    assert response.status_code == 200
    assert response.content == served.files[NON_ASCII_NAME]
    assert "filename*=UTF-8''" in response.headers["content-disposition"]


async def test_application_and_drive_spaces(start_server: StartServer, tmp_path: Path) -> None:
    media = tmp_path / "media"
    (media / "clips").mkdir(parents=True)
    (media / "clips" / "a.bin").write_bytes(b"application bytes")
    drive = tmp_path / "drive"
    drive.mkdir()
    (drive / "d.txt").write_bytes(b"drive bytes")
    served = await start_server(applications={"media": media}, drives={"7": drive})
    url = issue(served, "clips/a.bin", "app-media")
    assert urlsplit(url).path == "/s/app-media/clips/a.bin"
    assert (await fetch(served, url)).content == b"application bytes"
    assert (await fetch(served, issue(served, "d.txt", "drive-7"))).content == b"drive bytes"
    assert (await fetch(served, issue(served, "small.txt", "drive-1"))).status_code == 200


# --- overrides ---------------------------------------------------------------------------


async def test_signed_overrides_set_type_and_disposition(served: Served) -> None:
    name = "Résumé 2024 «final».pdf"
    url = issue(served, "small.txt", content_type="application/pdf", filename=name)
    query = parse_qs(urlsplit(url).query)
    assert query["response-content-type"] == ["application/pdf"]
    assert query["response-content-disposition"] == [content_disposition(name)]
    for method in ("GET", "HEAD"):
        response = await fetch(served, url, method)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/pdf"
        disposition = response.headers["content-disposition"]
        assert disposition.startswith(f'attachment; filename="{name}"; ')
        star = disposition.split("filename*=", 1)[1]
        assert star.startswith("UTF-8''")
        assert unquote(star[len("UTF-8''") :]) == name


async def test_unsigned_overrides_are_ignored(served: Served) -> None:
    url = issue(served, "small.txt")
    url = with_param(url, "response-content-type", "text/html")
    url = with_param(url, "response-content-disposition", "inline")
    response = await fetch(served, url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["content-disposition"] == 'attachment; filename="small.txt"'


async def test_changed_signed_override_is_tampering(served: Served) -> None:
    url = issue(served, "small.txt", content_type="text/csv")
    response = await fetch(served, with_param(url, "response-content-type", "text/html"))
    assert response.status_code == 403
    assert response.json() == TAMPERED


# --- refused URLs ------------------------------------------------------------------------


async def test_forged_url_is_403(served: Served) -> None:
    url = with_param(issue(served, "small.txt"), "sig", "A" * 43)
    response = await fetch(served, url)
    assert response.status_code == 403
    assert response.json() == TAMPERED
    assert served.files["small.txt"] not in response.content


@pytest.mark.parametrize(
    ("name", "value"),
    [("expires", "9999999999"), ("etag", '"0-0-0"'), ("sig", "")],
)
async def test_tampered_parameter_is_403(served: Served, name: str, value: str) -> None:
    response = await fetch(served, with_param(issue(served, "small.txt"), name, value))
    assert response.status_code == 403
    assert response.json() == TAMPERED


async def test_missing_signature_is_403(served: Served) -> None:
    response = await fetch(served, "/s/root/small.txt")
    assert response.status_code == 403
    assert response.json() == {"error": "missing signature (sig)"}


async def test_url_for_another_file_is_403(served: Served) -> None:
    url = issue(served, "small.txt").replace("/s/root/small.txt", "/s/root/medium.bin")
    response = await fetch(served, url)
    assert response.status_code == 403
    assert response.json() == TAMPERED


async def test_non_ascii_and_repeated_signatures_are_403_not_500(served: Served) -> None:
    url = issue(served, "small.txt")
    target = url[len(served.base) :]
    sig = parse_qs(urlsplit(url).query)["sig"][0]
    for bad in (
        target.replace(quote(sig), "%C3%A9" + sig[1:]),
        target.replace(quote(sig), "%EF%BC%A1" + sig[1:]),
        target + "&sig=" + quote(sig),
    ):
        response = await raw_get(served, bad)
        assert response.status == 403, bad
        assert response.json() == TAMPERED or "repeated" in response.json()["error"]


async def test_expired_url_is_403_expired(served: Served) -> None:
    urls = urls_of(served)
    etag = urls.spaces["root"].stat("small.txt").etag
    target = signed_target(
        urls.signer, "root", "small.txt", expires=int(time.time()) - 1, etag=etag
    )
    response = await raw_get(served, target)
    assert response.status == 403
    assert response.json() == EXPIRED


async def test_expiry_is_checked_when_a_request_starts(start_server: StartServer) -> None:
    """A transfer that started in time completes; the next request on the connection fails."""
    clock = FakeClock()
    served = await start_server(limits={"send_timeout": 10.0}, app=App(url_clock=clock))
    big = served.root / "big.bin"
    big.write_bytes(os.urandom(1 << 20) * 4)
    urls = urls_of(served)
    etag = urls.spaces["root"].stat("big.bin").etag
    expires = int(clock()) + 60
    target = signed_target(urls.signer, "root", "big.bin", expires=expires, etag=etag)
    async with served.client() as client:
        async with client.stream("GET", target) as response:
            assert response.status_code == 200
            chunks = response.aiter_raw()
            received = len(await chunks.__anext__())
            clock.advance(61)  # the URL expires mid-transfer
            async for chunk in chunks:
                received += len(chunk)
        assert received == big.stat().st_size
        again = await client.get(target)
        assert again.status_code == 403
        assert again.json() == EXPIRED
    # the background hash of big.bin is not this test's business
    served.server.services.digests.stop()


async def test_wrong_key_refused_and_previous_secret_accepted(start_server: StartServer) -> None:
    served = await start_server(secret="current-secret", previous_secrets=["old-secret"])
    etag = urls_of(served).spaces["root"].stat("small.txt").etag
    old = signed_target(Signer("old-secret"), "root", "small.txt", etag=etag)
    assert (await raw_get(served, old)).status == 200
    other = signed_target(Signer("other-secret"), "root", "small.txt", etag=etag)
    response = await raw_get(served, other)
    assert response.status == 403 and response.json() == TAMPERED
    # new URLs are signed with the current secret only
    url = issue(served, "small.txt")
    sig = parse_qs(urlsplit(url).query)["sig"][0]
    assert (
        sig
        == Signer("current-secret").sign(
            "root", "small.txt", expires=int(parse_qs(urlsplit(url).query)["expires"][0]), etag=etag
        )["sig"]
    )


async def test_only_get_and_head(served: Served) -> None:
    response = await fetch(served, issue(served, "small.txt"), "POST")
    assert response.status_code == 405


# --- the file changed --------------------------------------------------------------------


async def test_file_replaced_between_issue_and_get_is_412(served: Served) -> None:
    url = issue(served, "medium.bin")
    replacement = served.root / "medium.bin.new"
    replacement.write_bytes(os.urandom(70_001))
    os.replace(replacement, served.root / "medium.bin")
    for headers in ({}, {"Range": "bytes=100-"}, {"Range": "bytes=0-1,5-6"}):
        response = await fetch(served, url, headers=headers)
        assert response.status_code == 412, headers
        assert response.json() == CHANGED
    assert (await fetch(served, url, "HEAD")).status_code == 412


async def test_file_rewritten_in_place_is_412(served: Served) -> None:
    path = served.root / "small.txt"
    url = issue(served, "small.txt")
    before = path.stat()
    with open(path, "r+b") as handle:
        handle.write(b"J")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    response = await fetch(served, url, headers={"Range": "bytes=1-"})
    assert response.status_code == 412
    assert response.json() == CHANGED


async def test_file_deleted_after_issue_is_404(served: Served) -> None:
    url = issue(served, "noext")
    (served.root / "noext").unlink()
    assert (await fetch(served, url)).status_code == 404


# --- spaces and traversal ----------------------------------------------------------------


async def test_unknown_space_with_valid_signature_is_404(served: Served) -> None:
    target = signed_target(urls_of(served).signer, "app-gone", "small.txt")
    response = await raw_get(served, target)
    assert response.status == 404
    assert "error" in response.json()


@pytest.mark.parametrize(
    "target",
    [
        "/s/root/../secret.txt?expires=9999999999&etag=x&sig=" + "A" * 43,
        "/s/root/%2e%2e/secret.txt?expires=9999999999&etag=x&sig=" + "A" * 43,
        "/s/../secret.txt?expires=9999999999&etag=x&sig=" + "A" * 43,
        "/s/root/escape.txt?expires=9999999999&etag=x&sig=" + "A" * 43,
    ],
)
async def test_unsigned_traversal_is_refused_before_the_file_system(
    served: Served, target: str
) -> None:
    response = await raw_get(served, target)
    assert response.status == 403
    assert response.json() == TAMPERED
    assert SECRET not in response.body


@pytest.mark.parametrize(
    "path",
    ["../secret.txt", "escape.txt", "escape-dir/secret.txt", "..%2fsecret.txt", "subdir/../../x"],
)
async def test_signed_traversal_is_still_refused(served: Served, path: str) -> None:
    """Even a validly signed escaping path (never issued) cannot leave the space."""
    target = signed_target(urls_of(served).signer, "root", path)
    response = await raw_get(served, target)
    assert response.status in (403, 404)
    assert SECRET not in response.body
