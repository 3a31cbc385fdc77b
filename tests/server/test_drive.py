"""The drive-style API: ``POST /v2/file/get_download_url``, ``/v2/file/get``, ``/v2/file/list``.

Checksums are checked against hashlib and the bit-at-a-time CRC of ``tests.helpers.reference``;
every issued URL is fetched from the running server (body, Range, signed overrides).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest

from slipstream.server import App
from tests.helpers.clock import FakeClock
from tests.helpers.drive import (
    GET,
    ITEM_KEYS,
    LIST,
    URL,
    assert_error,
    fetch,
    parse_time,
    post,
    rfc3339_of,
)
from tests.helpers.reference import reference_crc
from tests.helpers.server import NON_ASCII_NAME, Served, StartServer

# --- get_download_url ---------------------------------------------------------------------


async def test_get_download_url_every_field(served: Served) -> None:
    data = served.files["medium.bin"]
    before = time.time()
    response = await post(served, URL, {"drive_id": "1", "file_id": "medium.bin"})
    after = time.time()
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {
        "url",
        "internal_url",
        "cdn_url",
        "expiration",
        "size",
        "crc64_hash",
        "content_hash",
        "content_hash_name",
    }
    assert body["size"] == len(data)
    assert body["crc64_hash"] == str(reference_crc("crc64xz", data))
    assert body["content_hash"] == hashlib.sha1(data).hexdigest().upper()
    assert body["content_hash_name"] == "sha1"
    assert body["url"].startswith(f"{served.base}/s/drive-1/medium.bin?")
    assert body["internal_url"] == body["url"]
    assert body["cdn_url"] == body["url"]
    expiration = parse_time(body["expiration"]).timestamp()
    assert before + 900 - 1 <= expiration <= after + 900 + 1
    downloaded = await fetch(body["url"])
    assert downloaded.status_code == 200
    assert downloaded.content == data


async def test_crc64_hash_is_unsigned_decimal_with_high_bit(start_server: StartServer) -> None:
    served = await start_server()
    # find a short content whose CRC-64/XZ has the top bit set (int64 would go negative)
    for n in range(1000):
        content = f"high bit {n}".encode()
        if reference_crc("crc64xz", content) >> 63:
            break
    (served.root / "high.txt").write_bytes(content)
    body = (await post(served, URL, {"file_id": "high.txt"})).json()
    assert body["crc64_hash"] == str(reference_crc("crc64xz", content))
    assert int(body["crc64_hash"]) >= 1 << 63


async def test_large_file_hashes_and_range_download(served: Served) -> None:
    data = served.files["random.bin"]
    body = (await post(served, URL, {"file_id": "random.bin"})).json()
    assert body["size"] == len(data)
    assert body["content_hash"] == hashlib.sha1(data).hexdigest().upper()
    ranged = await fetch(body["url"], Range="bytes=1000000-1000099")
    assert ranged.status_code == 206
    assert ranged.content == data[1_000_000:1_000_100]
    assert ranged.headers["content-range"] == f"bytes 1000000-1000099/{len(data)}"
    suffix = await fetch(body["url"], Range="bytes=-17")
    assert suffix.status_code == 206 and suffix.content == data[-17:]


async def test_empty_file_hashes(served: Served) -> None:
    body = (await post(served, URL, {"file_id": "empty.txt"})).json()
    assert body["size"] == 0
    assert body["crc64_hash"] == "0"
    assert body["content_hash"] == hashlib.sha1(b"").hexdigest().upper()


async def test_drive_id_defaults_to_one_and_file_id_is_normalised(served: Served) -> None:
    body = (await post(served, URL, {"file_id": "subdir//./deeper/deep.txt"})).json()
    assert urlsplit(body["url"]).path == "/s/drive-1/subdir/deeper/deep.txt"
    assert (await fetch(body["url"])).content == served.files["subdir/deeper/deep.txt"]


async def test_non_ascii_file(served: Served) -> None:
    data = served.files[NON_ASCII_NAME]
    body = (await post(served, URL, {"file_id": NON_ASCII_NAME})).json()
    assert body["content_hash"] == hashlib.sha1(data).hexdigest().upper()
    assert body["crc64_hash"] == str(reference_crc("crc64xz", data))
    path = urlsplit(body["url"]).path
    assert path.isascii() and unquote(path) == f"/s/drive-1/{NON_ASCII_NAME}"
    downloaded = await fetch(body["url"])
    assert downloaded.content == data
    disposition = downloaded.headers["content-disposition"]
    assert f"filename*=UTF-8''{quote(NON_ASCII_NAME, safe='')}" in disposition
    got = (await post(served, GET, {"file_id": NON_ASCII_NAME})).json()
    assert got["name"] == NON_ASCII_NAME and got["file_id"] == NON_ASCII_NAME
    assert got["size"] == len(data)


async def test_signed_file_name_and_content_type(served: Served) -> None:
    body = (
        await post(
            served,
            URL,
            {
                "file_id": "small.txt",
                "file_name": "Bericht März.txt",
                "response_content_type": "video/mp4",
            },
        )
    ).json()
    query = urlsplit(body["url"]).query
    assert "response-content-type=" in query and "response-content-disposition=" in query
    downloaded = await fetch(body["url"])
    assert downloaded.status_code == 200
    assert downloaded.content == served.files["small.txt"]
    assert downloaded.headers["content-type"] == "video/mp4"
    disposition = downloaded.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''Bericht%20M%C3%A4rz.txt" in disposition
    ranged = await fetch(body["url"], Range="bytes=0-4")
    assert ranged.status_code == 206 and ranged.content == b"hello"
    assert ranged.headers["content-type"] == "video/mp4"


async def test_unsigned_override_cannot_be_added(served: Served) -> None:
    body = (await post(served, URL, {"file_id": "small.txt"})).json()
    forged = body["url"] + "&response-content-type=text%2Fhtml"
    response = await fetch(forged)
    # an override the signature does not cover is ignored (as S3 does), never honoured
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("expire_sec", [1, 100, 604_800])
async def test_expire_sec_in_range(served: Served, expire_sec: int) -> None:
    before = time.time()
    response = await post(served, URL, {"file_id": "small.txt", "expire_sec": expire_sec})
    body = response.json()
    expiration = parse_time(body["expiration"]).timestamp()
    assert before + expire_sec - 1 <= expiration <= time.time() + expire_sec + 1
    assert f"expires={int(expiration)}" in body["url"]


@pytest.mark.parametrize("expire_sec", [0, -1, 604_801, 10**30, 1.5, 900.0, "900", True, [900]])
async def test_expire_sec_out_of_range_or_mistyped(served: Served, expire_sec: Any) -> None:
    response = await post(served, URL, {"file_id": "small.txt", "expire_sec": expire_sec})
    assert_error(response, 400, "InvalidParameter.ExpireSec")


async def test_expired_url_is_refused(start_server: StartServer) -> None:
    clock = FakeClock()
    served = await start_server(app=App(url_clock=clock))
    body = (await post(served, URL, {"file_id": "small.txt", "expire_sec": 1})).json()
    expires = parse_time(body["expiration"]).timestamp()
    assert expires == int(clock()) + 1
    assert (await fetch(body["url"])).status_code == 200
    clock.advance(1.05)
    response = await fetch(body["url"])
    assert response.status_code == 403
    assert "expired" in response.text


async def test_internal_and_cdn_urls(start_server: StartServer) -> None:
    served = await start_server(
        internal_url="http://internal.example:8080/", cdn_url="https://cdn.example/files"
    )
    body = (await post(served, URL, {"file_id": "small.txt", "file_name": "x.txt"})).json()
    url, internal, cdn = body["url"], body["internal_url"], body["cdn_url"]
    assert url.startswith(f"{served.base}/s/drive-1/small.txt?")
    assert internal.startswith("http://internal.example:8080/s/drive-1/small.txt?")
    assert cdn.startswith("https://cdn.example/files/s/drive-1/small.txt?")
    # each is a working grant: the same path and query against this server downloads the file
    for issued in (internal, cdn):
        parts = urlsplit(issued)
        local = f"{served.base}/s/drive-1/small.txt?{parts.query}"
        response = await fetch(local)
        assert response.status_code == 200, response.text
        assert response.content == served.files["small.txt"]


async def test_public_url_is_the_base(start_server: StartServer) -> None:
    served = await start_server(public_url="https://files.example.com")
    body = (await post(served, URL, {"file_id": "small.txt"})).json()
    assert body["url"].startswith("https://files.example.com/s/drive-1/small.txt?")
    assert body["cdn_url"] == body["internal_url"] == body["url"]


async def test_named_drive(start_server: StartServer, tmp_path: Path) -> None:
    media = tmp_path / "media"
    (media / "clips").mkdir(parents=True)
    (media / "clips" / "a.mp4").write_bytes(b"\x00\x01 fake mp4")
    served = await start_server(drives={"media": media})
    body = (await post(served, URL, {"drive_id": "media", "file_id": "clips/a.mp4"})).json()
    assert urlsplit(body["url"]).path == "/s/drive-media/clips/a.mp4"
    assert (await fetch(body["url"])).content == b"\x00\x01 fake mp4"
    # drive 1 is still the root
    assert (await post(served, URL, {"drive_id": "1", "file_id": "small.txt"})).status_code == 200
    missing = await post(served, URL, {"drive_id": "media", "file_id": "small.txt"})
    assert_error(missing, 404, "NotFound.File")


async def test_file_replaced_after_issue_gives_412(served: Served) -> None:
    body = (await post(served, URL, {"file_id": "noext"})).json()
    target = served.root / "noext"
    replacement = served.root / "noext.new"
    replacement.write_bytes(b"a different version\n")
    os.replace(replacement, target)
    response = await fetch(body["url"], Range="bytes=5-")
    assert response.status_code == 412
    fresh = (await post(served, URL, {"file_id": "noext"})).json()
    assert fresh["content_hash"] == hashlib.sha1(b"a different version\n").hexdigest().upper()
    assert (await fetch(fresh["url"])).content == b"a different version\n"


# --- /v2/file/get ---------------------------------------------------------------------------


async def test_get_file(served: Served) -> None:
    response = await post(served, GET, {"drive_id": "1", "file_id": "subdir/inner.txt"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == ITEM_KEYS
    mtime = (served.root / "subdir" / "inner.txt").stat().st_mtime_ns
    assert body == {
        "drive_id": "1",
        "file_id": "subdir/inner.txt",
        "parent_file_id": "subdir",
        "name": "inner.txt",
        "type": "file",
        "size": len(served.files["subdir/inner.txt"]),
        "updated_at": rfc3339_of(mtime),
    }


async def test_get_folder_and_root(served: Served) -> None:
    body = (await post(served, GET, {"file_id": "subdir/deeper/"})).json()
    mtime = (served.root / "subdir" / "deeper").stat().st_mtime_ns
    assert body == {
        "drive_id": "1",
        "file_id": "subdir/deeper",
        "parent_file_id": "subdir",
        "name": "deeper",
        "type": "folder",
        "size": 0,
        "updated_at": rfc3339_of(mtime),
    }
    top = (await post(served, GET, {"file_id": "subdir"})).json()
    assert top["parent_file_id"] == "root" and top["type"] == "folder"
    root = (await post(served, GET, {"file_id": "root"})).json()
    assert root["file_id"] == "root" and root["type"] == "folder" and root["parent_file_id"] == ""
    assert (await post(served, GET, {"file_id": "."})).json() == root


async def test_entry_named_root(served: Served) -> None:
    (served.root / "root").write_bytes(b"a file called root\n")
    listing = (await post(served, LIST, {})).json()
    ids = {item["name"]: item["file_id"] for item in listing["items"]}
    assert ids["root"] == "./root"
    got = (await post(served, GET, {"file_id": "./root"})).json()
    assert got["type"] == "file" and got["name"] == "root" and got["file_id"] == "./root"
    issued = (await post(served, URL, {"file_id": "./root"})).json()
    assert (await fetch(issued["url"])).content == b"a file called root\n"


# --- /v2/file/list --------------------------------------------------------------------------


async def test_list_root(served: Served) -> None:
    response = await post(served, LIST, {"drive_id": "1", "parent_file_id": "root"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"items", "next_marker"}
    assert body["next_marker"] == ""
    items = {item["name"]: item for item in body["items"]}
    for item in body["items"]:
        assert set(item) == ITEM_KEYS
        assert item["parent_file_id"] == "root" and item["drive_id"] == "1"
        parse_time(item["updated_at"])
    expected_files = {name for name in served.files if "/" not in name} | {"empty.txt"}
    expected = expected_files | {"subdir", "inside-link.txt", "unreadable.txt"}
    assert set(items) == expected
    for name in ("escape.txt", "escape-rel.txt", "escape-dir", "fifo", ".slipstream"):
        assert name not in items
    assert items["subdir"]["type"] == "folder" and items["subdir"]["size"] == 0
    assert items["random.bin"]["type"] == "file"
    assert items["random.bin"]["size"] == len(served.files["random.bin"])
    assert items[NON_ASCII_NAME]["file_id"] == NON_ASCII_NAME
    mtime = (served.root / "small.txt").stat().st_mtime_ns
    assert items["small.txt"]["updated_at"] == rfc3339_of(mtime)
    assert [item["name"] for item in body["items"]] == sorted(items)
    assert (await post(served, LIST, {})).json() == body


async def test_list_subfolder_ids_round_trip(served: Served) -> None:
    body = (await post(served, LIST, {"parent_file_id": "subdir"})).json()
    assert [(i["file_id"], i["type"]) for i in body["items"]] == [
        ("subdir/deeper", "folder"),
        ("subdir/inner.txt", "file"),
    ]
    deeper = (await post(served, LIST, {"parent_file_id": "subdir/deeper"})).json()
    (item,) = deeper["items"]
    assert item["file_id"] == "subdir/deeper/deep.txt"
    assert item["parent_file_id"] == "subdir/deeper"
    issued = (await post(served, URL, {"file_id": item["file_id"]})).json()
    assert (await fetch(issued["url"])).content == served.files["subdir/deeper/deep.txt"]


async def test_list_errors(served: Served) -> None:
    assert_error(await post(served, LIST, {"parent_file_id": "nope"}), 404, "NotFound.ParentFile")
    assert_error(
        await post(served, LIST, {"parent_file_id": "small.txt"}), 404, "NotFound.ParentFile"
    )
    assert_error(
        await post(served, LIST, {"parent_file_id": 3}), 400, "InvalidParameter.ParentFileId"
    )
    for limit in (0, -5, 201, "10", 2.0, False):
        response = await post(served, LIST, {"limit": limit})
        assert_error(response, 400, "InvalidParameter.Limit")
    for marker in ("not base64!", "%%%", "_w", "w2", 5, "ü"):
        response = await post(served, LIST, {"marker": marker})
        assert_error(response, 400, "InvalidParameter.Marker")


async def test_list_pagination_over_many_files(start_server: StartServer, tmp_path: Path) -> None:
    big = tmp_path / "big"
    (big / "many").mkdir(parents=True)
    names = [f"file-{i:04d}.dat" for i in range(0, 530, 2)]
    names += ["ÄÖÜ.txt", "日本.txt", "zz", "Z", "a b", "sub"]
    for name in names:
        if name == "sub":
            (big / "many" / name).mkdir()
        else:
            (big / "many" / name).write_bytes(name.encode() * 3)
    served = await start_server(drives={"big": big})
    seen: list[dict[str, Any]] = []
    marker = ""
    pages = 0
    while True:
        request: dict[str, Any] = {"drive_id": "big", "parent_file_id": "many", "limit": 37}
        if marker:
            request["marker"] = marker
        body = (await post(served, LIST, request)).json()
        pages += 1
        assert len(body["items"]) <= 37
        seen.extend(body["items"])
        marker = body["next_marker"]
        if not marker:
            break
        assert len(body["items"]) == 37
    assert pages == -(-len(names) // 37)
    assert [item["name"] for item in seen] == sorted(names)
    for item in seen:
        assert item["file_id"] == f"many/{item['name']}"
        if item["name"] != "sub":
            assert item["size"] == 3 * len(item["name"].encode())
    # the default limit is 100, the maximum 200
    first = (await post(served, LIST, {"drive_id": "big", "parent_file_id": "many"})).json()
    assert len(first["items"]) == 100
    widest = await post(served, LIST, {"drive_id": "big", "parent_file_id": "many", "limit": 200})
    assert len(widest.json()["items"]) == 200
    # a marker stays valid when the entry it names is deleted before the next page
    page = (
        await post(served, LIST, {"drive_id": "big", "parent_file_id": "many", "limit": 3})
    ).json()
    last = page["items"][-1]["name"]
    os.unlink(big / "many" / last)
    following = await post(
        served,
        LIST,
        {"drive_id": "big", "parent_file_id": "many", "limit": 3, "marker": page["next_marker"]},
    )
    assert [i["name"] for i in following.json()["items"]] == sorted(names)[3:6]


async def test_list_empty_folder(served: Served) -> None:
    (served.root / "hollow").mkdir()
    body = (await post(served, LIST, {"parent_file_id": "hollow", "limit": 1})).json()
    assert body == {"items": [], "next_marker": ""}
