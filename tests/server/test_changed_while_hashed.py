"""A file that changes while it is hashed: each caller's documented outcome.

The digest cache raises ``FileChanged`` when the file no longer has the version it was
opened with; ``slipstream.digests.opened_file_digests`` turns that into each
caller's policy.  Here the cache is made to report the change (``services.digests.get``
raises it a given number of times), so no timing is involved; a directory zip's CRC
reads report it the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import pytest

from slipstream.digests import Digests, FileChanged, FileKey
from slipstream.wsprotocol import Status
from slipstream.zip import localcrc
from slipstream.zip.localfiles import Listed
from tests.helpers.drive import URL, assert_error, post
from tests.helpers.server import Served
from tests.helpers.ws import connect, url_for


def changing(served: Served, monkeypatch: pytest.MonkeyPatch, times: int) -> list[FileKey]:
    """Make the first ``times`` hashes of the served app find their file changed; the
    keys asked for, in order."""
    cache = served.server.services.digests
    real_get = cache.get
    asked: list[FileKey] = []

    async def get(key: FileKey, fd: int, **options: Any) -> Digests:
        asked.append(key)
        if len(asked) <= times:
            raise FileChanged("file changed while it was being hashed")
        return await real_get(key, fd, **options)

    monkeypatch.setattr(cache, "get", get)
    return asked


async def test_a_file_reply_goes_without_integrity_headers(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = changing(served, monkeypatch, times=1)
    async with served.client() as client:
        reply = await client.get(
            "/api/download", params={"filepath": "small.txt"}, headers=served.auth
        )
    assert reply.status_code == 200
    assert reply.content == served.files["small.txt"]
    assert "repr-digest" not in reply.headers and "x-goog-hash" not in reply.headers
    assert len(asked) == 1


async def test_websocket_type7_is_status_6(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = changing(served, monkeypatch, times=1)
    async with connect(served) as ws:
        assert await url_for(ws, "medium.bin", id=3) == {
            "id": 3,
            "status": Status.INTERNAL_SERVER_ERROR,
        }
    assert len(asked) == 1


async def test_local_zip_is_503(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """A range that needs CRCs before its first member data (the end record needs every
    one) finds a file changed while its CRC is computed: 503, before any byte."""
    real = localcrc.read_files

    def changed(entries: Sequence[Listed]) -> list[tuple[bytes, int] | FileChanged]:
        found = real(entries)
        found[0] = FileChanged(f"{entries[0].name} changed since the zip was planned")
        return found

    monkeypatch.setattr(localcrc, "read_files", changed)
    async with served.client() as client:
        reply = await client.get(
            "/api/zip", params={"path": ""}, headers={**served.auth, "Range": "bytes=-22"}
        )
    assert reply.status_code == 503
    assert "changed since the zip was planned" in reply.json()["error"]


async def test_drive_hashes_again_until_the_file_holds_still(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = changing(served, monkeypatch, times=2)
    response = await post(served, URL, {"drive_id": "1", "file_id": "medium.bin"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["content_hash"] == hashlib.sha1(served.files["medium.bin"]).hexdigest().upper()
    assert len(asked) == 3


async def test_drive_gives_up_with_503_file_busy(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = changing(served, monkeypatch, times=10)
    response = await post(served, URL, {"drive_id": "1", "file_id": "medium.bin"})
    assert_error(response, 503, "ServiceUnavailable.FileBusy")
    assert len(asked) == 3
