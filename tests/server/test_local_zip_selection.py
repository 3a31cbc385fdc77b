"""``GET /api/zip`` with several ``path`` values, and ``POST /api/zip/url``: a zip of
files and folders chosen together, and a signed URL for it (what the web page uses)."""

from __future__ import annotations

import io
import zipfile
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

from slipstream.server import App
from tests.helpers.clock import FakeClock
from tests.helpers.server import Served, StartServer

ZIP = "/api/zip"


async def get_zip(served: Served, paths: list[str], **headers: str) -> httpx.Response:
    async with served.client() as client:
        return await client.get(
            ZIP, params=[("path", p) for p in paths], headers={**served.auth, **headers}
        )


async def zip_url(served: Served, body: object, auth: bool = True) -> httpx.Response:
    async with served.client() as client:
        return await client.post(f"{ZIP}/url", json=body, headers=served.auth if auth else {})


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        return {info.filename: archive.read(info) for info in archive.infolist()}


async def test_files_and_a_folder_are_named_relative_to_their_common_folder(
    served: Served,
) -> None:
    (served.root / "subdir" / "other.txt").write_bytes(b"other\n")
    response = await get_zip(served, ["subdir/inner.txt", "subdir/other.txt", "subdir/deeper"])
    assert response.status_code == 200
    assert 'filename="subdir.zip"' in response.headers["content-disposition"]
    assert members(response.content) == {
        "inner.txt": served.files["subdir/inner.txt"],
        "other.txt": b"other\n",
        "deeper/deep.txt": served.files["subdir/deeper/deep.txt"],
    }


async def test_items_of_the_root_and_a_nested_folder(served: Served) -> None:
    response = await get_zip(served, ["small.txt", "data.json", "subdir", "subdir/inner.txt"])
    assert response.status_code == 200
    assert 'filename="download.zip"' in response.headers["content-disposition"]
    assert members(response.content) == {  # subdir/inner.txt comes once, with its folder
        name: served.files[name]
        for name in ("small.txt", "data.json", "subdir/inner.txt", "subdir/deeper/deep.txt")
    }


async def test_the_order_of_the_paths_does_not_change_the_zip(served: Served) -> None:
    one = await get_zip(served, ["small.txt", "subdir", "data.json"])
    two = await get_zip(served, ["data.json", "small.txt", "subdir", "small.txt"])
    assert one.status_code == two.status_code == 200
    assert one.content == two.content
    assert one.headers["etag"] == two.headers["etag"]
    resumed = await get_zip(
        served,
        ["subdir", "data.json", "small.txt"],
        Range="bytes=100-",
        **{"If-Range": one.headers["etag"]},
    )
    assert resumed.status_code == 206
    assert resumed.content == one.content[100:]


async def test_a_missing_or_escaping_item_is_refused(served: Served) -> None:
    missing = await get_zip(served, ["small.txt", "nope.txt"])
    assert missing.status_code == 404
    escaping = await get_zip(served, ["small.txt", "../secret.txt"])
    assert escaping.status_code == 403
    async with served.client() as client:
        anonymous = await client.get(ZIP, params=[("path", "small.txt"), ("path", "data.json")])
    assert anonymous.status_code == 401


async def test_a_signed_url_works_without_a_token_for_that_selection_only(
    served: Served,
) -> None:
    reply = await zip_url(served, {"paths": ["small.txt", "subdir"], "expire_sec": 120})
    assert reply.status_code == 200, reply.text
    url = reply.json()["url"]
    assert url.startswith(f"{served.base}/api/zip?")
    assert served.token not in url
    async with httpx.AsyncClient() as client:
        signed = await client.get(url)
        assert signed.status_code == 200
        with_token = await get_zip(served, ["small.txt", "subdir"])
        assert signed.content == with_token.content
        query = parse_qsl(urlsplit(url).query)
        widened = [*query, ("path", "data.json")]
        tampered = await client.get(f"{served.base}{ZIP}?{urlencode(widened)}")
        assert tampered.status_code == 403
        assert tampered.json() == {"error": "signature does not match"}
        unsigned = [(k, v) for k, v in query if k != "sig"]
        assert (await client.get(f"{served.base}{ZIP}?{urlencode(unsigned)}")).status_code == 401


async def test_a_signed_url_expires(start_server: StartServer) -> None:
    clock = FakeClock()
    served = await start_server(app=App(url_clock=clock))
    reply = await zip_url(served, {"paths": ["subdir"], "expire_sec": 60})
    assert reply.json()["expires"] == int(clock()) + 60
    url = reply.json()["url"]
    async with httpx.AsyncClient() as client:
        assert (await client.get(url)).status_code == 200
        clock.advance(61)
        expired = await client.get(url)
    assert expired.status_code == 403
    assert expired.json() == {"error": "URL expired"}


async def test_zip_url_checks_its_body_and_token(served: Served) -> None:
    assert (await zip_url(served, {"paths": ["small.txt"]}, auth=False)).status_code == 401
    for body in (
        [],
        {"paths": []},
        {"paths": "small.txt"},
        {"paths": [1]},
        {"paths": ["subdir"], "expire_sec": 0},
        {"paths": ["subdir"], "expire_sec": 604_801},
        {"paths": ["subdir"], "expire_sec": 1.5},
        {"paths": ["subdir"], "expire_sec": True},
    ):
        reply = await zip_url(served, body)
        assert reply.status_code == 400, body
        assert set(reply.json()) == {"error"}
    assert (await zip_url(served, {"paths": ["small.txt", "nope"]})).status_code == 404
    async with served.client() as client:
        broken = await client.post(f"{ZIP}/url", content=b"{", headers=served.auth)
    assert broken.status_code == 400
