"""``GET /api/zip?path=DIR``: a directory of the root as a deterministic, resumable zip."""

from __future__ import annotations

import io
import os
import subprocess
import zipfile

import httpx
import pytest

from tests.helpers.server import Served

ZIP = "/api/zip"


async def fetch(served: Served, path: str, **headers: str) -> httpx.Response:
    async with served.client() as client:
        return await client.get(ZIP, params={"path": path}, headers={**served.auth, **headers})


def expected_members(served: Served, prefix: str = "") -> dict[str, bytes]:
    """Readable regular files under ``prefix`` (symlinks, fifos, unreadable ones left out)."""
    out = {}
    base = served.root / prefix
    for path in sorted(base.rglob("*")):
        if path.is_symlink() or not path.is_file() or not os.stat(path).st_mode & 0o444:
            continue
        relative = path.relative_to(base).as_posix()
        if relative.startswith(".slipstream"):
            continue
        out[relative] = path.read_bytes()
    return out


async def test_zip_of_the_root_holds_every_readable_file(served: Served) -> None:
    response = await fetch(served, "")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["accept-ranges"] == "bytes"
    assert 'filename="download.zip"' in response.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    members = {info.filename: archive.read(info) for info in archive.infolist()}
    expected = expected_members(served)
    safe = {name.replace('"', "_"): data for name, data in expected.items()}
    assert members == safe
    assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())


async def test_subdirectory_names_are_relative_to_it(served: Served) -> None:
    response = await fetch(served, "subdir")
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(archive.namelist()) == ["deeper/deep.txt", "inner.txt"]
    assert 'filename="subdir.zip"' in response.headers["content-disposition"]


async def test_the_zip_is_deterministic_and_ranges_are_slices_of_it(served: Served) -> None:
    full = await fetch(served, "")
    again = await fetch(served, "")
    assert again.content == full.content
    assert again.headers["etag"] == full.headers["etag"]
    size = len(full.content)
    for start, stop in [(0, 0), (1, 99), (size // 3, size // 2), (size - 30, size - 1)]:
        part = await fetch(served, "", Range=f"bytes={start}-{stop}")
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes {start}-{stop}/{size}"
        assert part.content == full.content[start : stop + 1]
    suffix = await fetch(served, "", Range="bytes=-100")
    assert suffix.content == full.content[-100:]


async def test_if_range_and_head(served: Served) -> None:
    full = await fetch(served, "")
    etag = full.headers["etag"]
    matching = await fetch(served, "", Range="bytes=10-19", **{"If-Range": etag})
    assert matching.status_code == 206
    stale = await fetch(served, "", Range="bytes=10-19", **{"If-Range": '"other"'})
    assert stale.status_code == 200
    assert stale.content == full.content
    async with served.client() as client:
        head = await client.head(ZIP, params={"path": ""}, headers=served.auth)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(full.content))
    assert head.content == b""


async def test_a_changed_file_changes_the_etag(served: Served) -> None:
    before = await fetch(served, "subdir")
    (served.root / "subdir" / "inner.txt").write_bytes(b"new content, new size\n")
    after = await fetch(served, "subdir")
    assert after.headers["etag"] != before.headers["etag"]
    archive = zipfile.ZipFile(io.BytesIO(after.content))
    assert archive.read("inner.txt") == b"new content, new size\n"


async def test_unzip_accepts_it(served: Served, tmp_path: os.PathLike[str]) -> None:
    response = await fetch(served, "")
    target = os.path.join(tmp_path, "root.zip")
    with open(target, "wb") as handle:
        handle.write(response.content)
    result = subprocess.run(["unzip", "-t", target], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("path", "status"),
    [("../", 403), ("subdir/../../etc", 403), ("nope", 404), ("small.txt", 403)],
)
async def test_bad_paths(served: Served, path: str, status: int) -> None:
    assert (await fetch(served, path)).status_code == status


async def test_the_state_dir_is_not_zipped_and_cannot_be_asked_for(served: Served) -> None:
    assert (await fetch(served, ".slipstream")).status_code == 404


async def test_a_token_is_required(served: Served) -> None:
    async with served.client() as client:
        response = await client.get(ZIP, params={"path": ""})
    assert response.status_code == 401
