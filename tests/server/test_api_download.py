"""``GET /api/download`` exactly as seed 002: auth, headers, every documented error."""

from __future__ import annotations

import os
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote, unquote

import httpx
import pytest
import trio

from tests.helpers.raw_http import get
from tests.helpers.server import (
    NON_ASCII_NAME,
    TOKEN,
    Served,
    StartServer,
    build_tree,
    download_target,
    running_server,
)


def error_of(response: httpx.Response, status: int) -> str:
    """Assert a one-key ``{"error": ...}`` JSON reply with ``status``; return the message."""
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert list(payload) == ["error"]
    assert isinstance(payload["error"], str)
    return str(payload["error"])


async def download(served: Served, filepath: str | None, **params: str) -> httpx.Response:
    query = {"filepath": filepath} if filepath is not None else {}
    async with served.client(headers=served.auth) as client:
        return await client.get("/api/download", params={**query, **params})


# --- auth -------------------------------------------------------------------------------


async def test_bearer_header_authenticates(served: Served) -> None:
    async with served.client() as client:
        response = await client.get(
            "/api/download",
            params={"filepath": "small.txt"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert response.status_code == 200
    assert response.content == served.files["small.txt"]


async def test_bearer_scheme_is_case_insensitive(served: Served) -> None:
    async with served.client() as client:
        response = await client.get(
            "/api/download",
            params={"filepath": "small.txt"},
            headers={"Authorization": f"bearer {TOKEN}"},
        )
    assert response.status_code == 200


async def test_token_query_parameter_authenticates(served: Served) -> None:
    async with served.client() as client:
        response = await client.get(
            "/api/download", params={"filepath": "small.txt", "token": TOKEN}
        )
    assert response.status_code == 200
    assert response.content == served.files["small.txt"]


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({}, {}),
        ({"Authorization": "Bearer wrong-token"}, {}),
        ({"Authorization": "Bearer"}, {}),
        ({"Authorization": f"Basic {TOKEN}"}, {}),
        ({"Authorization": TOKEN}, {}),
        ({"Authorization": f"Bearer {TOKEN}x"}, {}),
        ({"Authorization": f"Bearer {TOKEN[:-1]}"}, {}),
        ({}, {"token": "wrong"}),
        ({}, {"token": ""}),
        ({}, {"token": TOKEN.upper()}),
    ],
)
async def test_missing_or_wrong_token_is_401(
    served: Served, headers: dict[str, str], params: dict[str, str]
) -> None:
    async with served.client() as client:
        response = await client.get(
            "/api/download", params={"filepath": "small.txt", **params}, headers=headers
        )
    error_of(response, 401)
    assert served.files["small.txt"] not in response.content


async def test_auth_is_checked_before_anything_else(served: Served) -> None:
    """Without a token, even a bad request reveals nothing about the files."""
    async with served.client() as client:
        for params in ({}, {"filepath": "nope.txt"}, {"filepath": "../secret.txt"}):
            assert (await client.get("/api/download", params=params)).status_code == 401
        assert (
            await client.head("/api/download", params={"filepath": "small.txt"})
        ).status_code == 401


async def test_several_tokens_are_all_accepted(start_server: StartServer) -> None:
    served = await start_server(tokens=["first-token", "second-token"])
    async with served.client() as client:
        for token in ("first-token", "second-token"):
            response = await client.get(
                "/api/download", params={"filepath": "small.txt", "token": token}
            )
            assert response.status_code == 200
        response = await client.get(
            "/api/download", params={"filepath": "small.txt", "token": TOKEN}
        )
        assert response.status_code == 401


# --- success headers --------------------------------------------------------------------


async def test_success_headers_match_the_seed(served: Served) -> None:
    response = await download(served, "random.bin")
    data = served.files["random.bin"]
    assert response.status_code == 200
    assert response.content == data
    h = response.headers
    assert h["content-disposition"] == 'attachment; filename="random.bin"'
    assert h["content-type"] == "application/octet-stream"
    assert h["content-length"] == str(len(data))
    assert h["content-description"] == "File Transfer"
    assert h["content-transfer-encoding"] == "binary"
    assert h["accept-ranges"] == "bytes"
    etag = h["etag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    mtime = int((served.root / "random.bin").stat().st_mtime)
    assert int(parsedate_to_datetime(h["last-modified"]).timestamp()) == mtime
    assert h["last-modified"].endswith(" GMT")


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("small.txt", "text/plain"),
        ("data.json", "application/json"),
        ("image.png", "image/png"),
        ("noext", "application/octet-stream"),
        ("random.bin", "application/octet-stream"),
        ("subdir/inner.txt", "text/plain"),
    ],
)
async def test_content_type_from_extension(served: Served, name: str, content_type: str) -> None:
    response = await download(served, name)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == content_type
    assert response.content == served.files[name]
    basename = name.rsplit("/", 1)[-1]
    assert response.headers["content-disposition"] == f'attachment; filename="{basename}"'


async def test_non_ascii_name_is_utf8_in_the_quoted_form_and_in_filename_star(
    served: Served,
) -> None:
    """Seed 002's ``filename="<actual name>"``: the real name, as UTF-8 bytes on the wire
    (what ``curl -J`` and wget read), plus the RFC 6266 ``filename*`` browsers prefer."""
    client = await served.raw()
    await client.send(get(download_target(NON_ASCII_NAME)))
    reply = await client.read_response()
    await client.aclose()
    assert reply.status == 200
    assert reply.body == served.files[NON_ASCII_NAME]
    value = reply.header("content-disposition")
    assert value is not None
    star = quote(NON_ASCII_NAME, safe="")
    expected = f"attachment; filename=\"{NON_ASCII_NAME}\"; filename*=UTF-8''{star}"
    assert value.encode("latin-1") == expected.encode("utf-8")


async def test_curl_remote_header_name_saves_the_real_name(served: Served, tmp_path: Path) -> None:
    """The README's ``curl -O -J`` (curl ignores ``filename*``) saves the file under its
    own UTF-8 name; a quote, which a quoted string cannot carry to curl, becomes ``_``."""
    names = {"résumé 日本.txt": "résumé 日本.txt", 'quo"te.txt': "quo_te.txt"}
    (served.root / "résumé 日本.txt").write_bytes(b"curl saves me\n")
    for name, saved in names.items():
        out = tmp_path / f"curl-{len(os.listdir(tmp_path))}"
        out.mkdir()
        url = f"{served.base}/api/download?filepath={quote(name, safe='')}"
        command = ["curl", "-f", "-sS", "--noproxy", "*", "-O", "-J"]
        command += ["-H", f"Authorization: Bearer {TOKEN}", url]
        with trio.fail_after(30):
            await trio.run_process(command, cwd=out, capture_stdout=True, capture_stderr=True)
        assert os.listdir(out) == [saved]
        assert (out / saved).read_bytes() == (served.root / name).read_bytes()


async def test_quote_in_name_is_not_injected_into_the_header(served: Served) -> None:
    response = await download(served, 'quo"te.txt')
    assert response.status_code == 200
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=")
    fallback = disposition.split("filename=", 1)[1].split(";")[0]
    assert fallback.count('"') == 2  # the name's own quote was replaced
    star = disposition.split("filename*=UTF-8''", 1)[1]
    assert unquote(star) == 'quo"te.txt'


async def test_fstype_osfs_explicit_and_default_agree(served: Served) -> None:
    implicit = await download(served, "small.txt")
    explicit = await download(served, "small.txt", fstype="OsFs")
    empty = await download(served, "small.txt", fstype="")
    assert implicit.content == explicit.content == empty.content == served.files["small.txt"]
    assert implicit.headers["etag"] == explicit.headers["etag"]


async def test_large_file_is_streamed_intact(served: Served) -> None:
    async with (
        served.client(headers=served.auth) as client,
        client.stream("GET", "/api/download", params={"filepath": "random.bin"}) as response,
    ):
        assert response.status_code == 200
        received = bytearray()
        async for chunk in response.aiter_bytes():
            received += chunk
    assert bytes(received) == served.files["random.bin"]


async def test_etag_changes_when_the_file_changes(served: Served) -> None:
    before = (await download(served, "small.txt")).headers["etag"]
    path = served.root / "small.txt"
    path.write_bytes(b"rewritten\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    after = await download(served, "small.txt")
    assert after.content == b"rewritten\n"
    assert after.headers["etag"] != before


# --- errors, with the seed's messages and codes --------------------------------------------


async def test_missing_filepath_is_400(served: Served) -> None:
    message = error_of(await download(served, None), 400)
    assert message == "provide a file path is required -> could not download file"


async def test_empty_filepath_is_400(served: Served) -> None:
    message = error_of(await download(served, ""), 400)
    assert message == "provide a file path is required -> could not download file"


async def test_path_outside_the_base_is_403(served: Served) -> None:
    assert error_of(await download(served, "../secret.txt"), 403) == "file path is not allowed"


async def test_symlink_escaping_the_base_is_403(served: Served) -> None:
    for path in ("escape.txt", "escape-rel.txt", "escape-dir/secret.txt"):
        assert error_of(await download(served, path), 403) == "file path is not allowed"


@pytest.mark.parametrize("path", ["subdir", "subdir/", "subdir/deeper", "."])
async def test_directory_is_403(served: Served, path: str) -> None:
    message = error_of(await download(served, path), 403)
    assert message == f"{path} is a directory and not a file"


async def test_unreadable_file_is_403(served: Served) -> None:
    assert error_of(await download(served, "unreadable.txt"), 403) == "file is not readable"


async def test_fifo_is_403_not_a_regular_file(served: Served) -> None:
    assert error_of(await download(served, "fifo"), 403) == "file is not a regular file"


@pytest.mark.parametrize("path", ["nope.txt", "subdir/nope.txt", "nodir/nope.txt", "small.txt/x"])
async def test_not_found_is_404(served: Served, path: str) -> None:
    assert error_of(await download(served, path), 404) == f"file not found at {path}"


async def test_empty_file_is_412(served: Served) -> None:
    assert error_of(await download(served, "empty.txt"), 412) == "file is empty"


@pytest.mark.parametrize("fstype", ["S3Fs", "osfs", "nope"])
async def test_unknown_fstype_is_412(served: Served, fstype: str) -> None:
    message = error_of(await download(served, "small.txt", fstype=fstype), 412)
    assert message.startswith("failed to get file system: ")


async def test_memfs_layer_exists_and_reports_missing_files(served: Served) -> None:
    assert error_of(await download(served, "small.txt", fstype="MemFs"), 404) == (
        "file not found at small.txt"
    )


async def test_over_max_download_size_is_413(start_server: StartServer) -> None:
    served = await start_server(max_download_size=1024 * 1024)
    message = error_of(await download(served, "random.bin"), 413)
    assert message == "file too large, max size is 1 MB"
    small = await download(served, "medium.bin")  # 70 KB: under the limit
    assert small.content == served.files["medium.bin"]


async def test_file_exactly_at_the_limit_is_served(start_server: StartServer) -> None:
    served = await start_server(max_download_size=70_001)
    assert (await download(served, "medium.bin")).status_code == 200
    (served.root / "one-more.bin").write_bytes(b"x" * 70_002)
    error_of(await download(served, "one-more.bin"), 413)


async def test_default_limit_is_50_mb(start_server: StartServer) -> None:
    served = await start_server()
    path = served.root / "big.bin"
    with path.open("wb") as handle:
        handle.truncate(50 * 1024 * 1024 + 1)
    message = error_of(await download(served, "big.bin"), 413)
    assert message == "file too large, max size is 50 MB"
    async with served.client(headers=served.auth) as client:
        head = await client.head("/api/download", params={"filepath": "big.bin"})
    assert head.status_code == 413


async def test_zero_max_download_size_means_no_limit(start_server: StartServer) -> None:
    served = await start_server(max_download_size=0)
    path = served.root / "big.bin"
    with path.open("wb") as handle:
        handle.truncate(60 * 1024 * 1024)
    async with served.client(headers=served.auth) as client:
        head = await client.head("/api/download", params={"filepath": "big.bin"})
        assert head.status_code == 200
        assert head.headers["content-length"] == str(60 * 1024 * 1024)
        tail = await client.get(
            "/api/download", params={"filepath": "big.bin"}, headers={"Range": "bytes=-10"}
        )
    assert tail.status_code == 206
    assert tail.content == b"\0" * 10


async def test_error_order_matches_the_seed(served: Served) -> None:
    """fstype is checked before the path; emptiness before the size limit."""
    bad_fs = await download(served, "../secret.txt", fstype="nope")
    assert error_of(bad_fs, 412).startswith("failed to get file system: ")
    assert error_of(await download(served, "", fstype="nope"), 400)


async def test_state_dir_is_never_served(served: Served) -> None:
    state = served.root / ".slipstream"
    assert state.is_dir()
    (state / "token").write_text("persisted-secret-token\n")
    for path in (
        ".slipstream/token",
        ".slipstream",
        "./.slipstream/token",
        "subdir/../.slipstream/token",
    ):
        response = await download(served, path)
        assert response.status_code in (403, 404), (path, response.status_code)
        assert b"persisted-secret-token" not in response.content


async def test_custom_state_dir_inside_root_is_hidden(tmp_path: Path) -> None:
    root, _ = build_tree(tmp_path)
    state = root / "private-state"
    async with running_server(tmp_path, state_dir=state) as served:
        assert state.is_dir()
        (state / "token").write_text("persisted-secret-token\n")
        for path in ("private-state/token", "private-state", "./private-state//token"):
            response = await download(served, path)
            assert response.status_code in (403, 404), (path, response.status_code)
            assert b"persisted-secret-token" not in response.content
        # with a state dir elsewhere, a directory named .slipstream is ordinary content
        (root / ".slipstream").mkdir(exist_ok=True)
        (root / ".slipstream" / "public.txt").write_text("public\n")
        assert (await download(served, ".slipstream/public.txt")).content == b"public\n"


async def test_head_on_every_error_has_no_body(served: Served) -> None:
    async with served.client(headers=served.auth) as client:
        for path, status in (("nope.txt", 404), ("empty.txt", 412), ("subdir", 403)):
            head = await client.head("/api/download", params={"filepath": path})
            assert head.status_code == status
            assert head.content == b""
            get = await client.get("/api/download", params={"filepath": path})
            assert head.headers["content-length"] == get.headers["content-length"]


# --- the open-file cache ------------------------------------------------------------------


async def test_a_file_replaced_or_rewritten_is_never_served_stale(served: Served) -> None:
    """Descriptors are kept between downloads, and revalidated on every one."""
    path = served.root / "cached.txt"
    path.write_bytes(b"one")
    first = await download(served, "cached.txt")
    assert first.content == b"one" and len(served.server.services.open_files) >= 1
    again = await download(served, "cached.txt")
    assert again.headers["etag"] == first.headers["etag"]
    (served.root / "cached.new").write_bytes(b"two, renamed over")
    os.replace(served.root / "cached.new", path)
    replaced = await download(served, "cached.txt")
    assert replaced.content == b"two, renamed over"
    assert replaced.headers["etag"] != first.headers["etag"]
    with open(path, "ab") as f:
        f.write(b" and appended")
    appended = await download(served, "cached.txt")
    assert appended.content == b"two, renamed over and appended"
    assert appended.headers["etag"] != replaced.headers["etag"]
    path.unlink()
    assert error_of(await download(served, "cached.txt"), 404)
