"""The drive API's errors: every refusal is a drive-style ``{"code", "message"}`` reply,
including those the router and the connection raise before an endpoint runs.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.drive import GET, LIST, URL, assert_error, fetch, post
from tests.helpers.server import SECRET, Served

# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [URL, GET, LIST])
async def test_missing_or_wrong_token(served: Served, path: str) -> None:
    response = await post(served, path, {"file_id": "small.txt"}, auth=False)
    assert_error(response, 401, "AccessTokenInvalid")
    assert response.headers["www-authenticate"].startswith("Bearer")
    async with served.client() as client:
        wrong = await client.post(
            path, json={"file_id": "small.txt"}, headers={"Authorization": "Bearer nope"}
        )
    assert_error(wrong, 401, "AccessTokenInvalid")


@pytest.mark.parametrize("path", [URL, GET, LIST])
@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[1, 2]", b'"text"', b"42", b"\xff\xfe{}", b"[" * 100_000 + b"]" * 100_000],
)
async def test_bad_body(served: Served, path: str, raw: bytes) -> None:
    assert_error(await post(served, path, raw), 400, "InvalidParameter.Body")


async def test_bad_json_needs_auth_first(served: Served) -> None:
    assert_error(await post(served, URL, b"{not json", auth=False), 401, "AccessTokenInvalid")


@pytest.mark.parametrize("path", [URL, GET])
@pytest.mark.parametrize("body", [{}, {"file_id": None}, {"file_id": ""}, {"file_id": 7}])
async def test_file_id_missing_or_invalid(served: Served, path: str, body: Any) -> None:
    assert_error(await post(served, path, body), 400, "InvalidParameter.FileId")


async def test_empty_body_means_missing_file_id(served: Served) -> None:
    assert_error(await post(served, URL, b""), 400, "InvalidParameter.FileId")


@pytest.mark.parametrize("path", [URL, GET, LIST])
async def test_drive_errors(served: Served, path: str) -> None:
    body = {"file_id": "small.txt", "parent_file_id": "root"}
    assert_error(await post(served, path, {**body, "drive_id": "2"}), 404, "NotFound.Drive")
    assert_error(await post(served, path, {**body, "drive_id": "../1"}), 404, "NotFound.Drive")
    assert_error(await post(served, path, {**body, "drive_id": 1}), 400, "InvalidParameter.DriveId")
    assert_error(
        await post(served, path, {**body, "drive_id": ""}), 400, "InvalidParameter.DriveId"
    )
    assert_error(await post(served, path, {**body, "share_id": 5}), 400, "InvalidParameter.ShareId")
    ok = await post(served, path, {**body, "share_id": "7JQX1FswpQ8"})
    assert ok.status_code == 200


@pytest.mark.parametrize("path", [URL, GET])
async def test_file_not_found(served: Served, path: str) -> None:
    body = assert_error(await post(served, path, {"file_id": "nope.txt"}), 404, "NotFound.File")
    assert "nope.txt" in body["message"]
    assert str(served.root) not in body["message"]
    missing_dir = await post(served, path, {"file_id": "no/such/dir.txt"})
    assert_error(missing_dir, 404, "NotFound.File")


TRAVERSALS = [
    "../secret.txt",
    "subdir/../../secret.txt",
    "..\\secret.txt",
    "%2e%2e/secret.txt",
    "%252e%252e%252fsecret.txt",
    "/etc/passwd",
    "\\\\host\\share\\x",
    "C:/Windows/win.ini",
    "\uff0e\uff0e/secret.txt",  # FULLWIDTH FULL STOP
    "escape.txt",
    "escape-rel.txt",
    "escape-dir/secret.txt",
    "small.txt\x00.png",
]


@pytest.mark.parametrize("file_id", TRAVERSALS)
@pytest.mark.parametrize("path", [URL, GET])
async def test_path_traversal_refused(served: Served, path: str, file_id: str) -> None:
    response = await post(served, path, {"file_id": file_id})
    assert response.status_code in (400, 403), response.text
    code = response.json()["code"]
    assert code in ("Forbidden.PathNotAllowed", "InvalidParameter.FileId")
    assert SECRET not in response.content


@pytest.mark.parametrize("parent", ["..", "../secret-dir", "escape-dir", "/", "subdir/../.."])
async def test_list_traversal_refused(served: Served, parent: str) -> None:
    response = await post(served, LIST, {"parent_file_id": parent})
    assert_error(response, 403, "Forbidden.PathNotAllowed")
    assert b"secret" not in response.content


@pytest.mark.parametrize("path", [URL, GET])
async def test_state_dir_is_invisible(served: Served, path: str) -> None:
    for file_id in (".slipstream/token", ".slipstream/secret", ".slipstream"):
        response = await post(served, path, {"file_id": file_id})
        assert_error(response, 404, "NotFound.File")
        assert served.token.encode() not in response.content
    listing = await post(served, LIST, {"parent_file_id": ".slipstream"})
    assert_error(listing, 404, "NotFound.ParentFile")


async def test_not_a_downloadable_file(served: Served) -> None:
    assert_error(await post(served, URL, {"file_id": "subdir"}), 403, "Forbidden.IsFolder")
    assert_error(await post(served, URL, {"file_id": "root"}), 403, "Forbidden.IsFolder")
    assert_error(await post(served, URL, {"file_id": "."}), 403, "Forbidden.IsFolder")
    assert_error(await post(served, URL, {"file_id": "fifo"}), 403, "Forbidden.NotRegularFile")
    unreadable = await post(served, URL, {"file_id": "unreadable.txt"})
    assert_error(unreadable, 403, "Forbidden.FileNotReadable")


@pytest.mark.parametrize(
    "name", ["a\nb.txt", "tab\there", "a/b.txt", "a\\b.txt", "x" * 256, "\x85next", ""]
)
async def test_bad_file_name(served: Served, name: str) -> None:
    response = await post(served, URL, {"file_id": "small.txt", "file_name": name})
    assert_error(response, 400, "InvalidParameter.FileName")


@pytest.mark.parametrize(
    "value", ["text/plain\r\nX-Evil: 1", "video", "vidéo/mp4", "text/plain; q=\x01", "", 3]
)
async def test_bad_response_content_type(served: Served, value: Any) -> None:
    response = await post(served, URL, {"file_id": "small.txt", "response_content_type": value})
    assert_error(response, 400, "InvalidParameter.ResponseContentType")


async def test_content_type_with_parameters_is_accepted(served: Served) -> None:
    body = {"file_id": "small.txt", "response_content_type": "text/plain; charset=utf-8"}
    issued = (await post(served, URL, body)).json()
    assert (await fetch(issued["url"])).headers["content-type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize("path", [URL, GET, LIST])
async def test_only_post(served: Served, path: str) -> None:
    async with served.client() as client:
        response = await client.get(path, headers=served.auth)
    assert response.status_code == 405
