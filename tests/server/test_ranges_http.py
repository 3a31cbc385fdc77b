"""Range, If-Range and conditional requests over HTTP, as nginx does them (RFC 9110)."""

from __future__ import annotations

import email
import email.message
import itertools
import os
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.server import TOKEN, Served, running_server

MTIME = 1_700_000_000  # Tue, 14 Nov 2023 22:13:20 GMT
Interval = tuple[int, int]  # [start, stop)


def date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)


async def fetch(
    served: Served, name: str, headers: dict[str, str], method: str = "GET"
) -> httpx.Response:
    async with served.client(headers=served.auth) as client:
        return await client.request(
            method, "/api/download", params={"filepath": name}, headers=headers
        )


def pin_mtime(served: Served, name: str) -> None:
    os.utime(served.root / name, (MTIME, MTIME))


def parse_content_range(value: str) -> tuple[Interval, int]:
    unit, _, rest = value.partition(" ")
    assert unit == "bytes"
    span, _, total = rest.partition("/")
    first, _, last = span.partition("-")
    return (int(first), int(last) + 1), int(total)


def parse_multipart(content_type: str, body: bytes) -> list[email.message.Message]:
    """Parse a multipart/byteranges body back with the stdlib ``email`` parser."""
    message = email.message_from_bytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    assert message.is_multipart()
    assert message.get_content_type() == "multipart/byteranges"
    assert not message.defects, message.defects
    parts = message.get_payload()
    assert isinstance(parts, list)
    assert all(isinstance(part, email.message.Message) for part in parts)
    return [part for part in parts if isinstance(part, email.message.Message)]


def parts_of(response: httpx.Response, size: int) -> list[tuple[Interval, bytes]]:
    """The (range, bytes) pieces of a 206, single or multipart."""
    assert response.status_code == 206
    content_type = response.headers["content-type"]
    assert response.headers["content-length"] == str(len(response.content))
    if content_type.startswith("multipart/byteranges"):
        assert "content-range" not in response.headers
        out = []
        for part in parse_multipart(content_type, response.content):
            interval, total = parse_content_range(part["Content-Range"])
            assert total == size
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            out.append((interval, payload))
        assert len(out) >= 2, "a multipart reply needs at least two parts"
        return out
    interval, total = parse_content_range(response.headers["content-range"])
    assert total == size
    return [(interval, response.content)]


def merge(intervals: list[Interval]) -> list[Interval]:
    """Union of intervals, touching ones joined."""
    out: list[Interval] = []
    for start, stop in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], stop))
        else:
            out.append((start, stop))
    return out


def resolve(spec: tuple[int | None, int | None], size: int) -> Interval | None:
    """A spec as the byte interval it selects (RFC 9110 §14.1.2), None if unsatisfiable."""
    first, last = spec
    if first is None:
        assert last is not None
        return (max(size - last, 0), size) if last > 0 else None
    if first >= size:
        return None
    return (first, size if last is None else min(last + 1, size))


def spec_text(spec: tuple[int | None, int | None]) -> str:
    first, last = spec
    return f"{'' if first is None else first}-{'' if last is None else last}"


# --- single ranges -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "interval"),
    [
        ("0-0", (0, 1)),
        ("0-99", (0, 100)),
        ("100-199", (100, 200)),
        ("70000-", (70000, 70001)),
        ("69000-", (69000, 70001)),
        ("-1", (70000, 70001)),
        ("-500", (69501, 70001)),
        ("-70001", (0, 70001)),
        ("-999999", (0, 70001)),
        ("65000-999999", (65000, 70001)),
        ("0-", (0, 70001)),
    ],
)
async def test_single_range_is_206_with_content_range(
    served: Served, spec: str, interval: Interval
) -> None:
    data = served.files["medium.bin"]
    size = len(data)
    response = await fetch(served, "medium.bin", {"Range": f"bytes={spec}"})
    assert response.status_code == 206
    start, stop = interval
    assert response.headers["content-range"] == f"bytes {start}-{stop - 1}/{size}"
    assert response.headers["content-length"] == str(stop - start)
    assert response.content == data[start:stop]
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"].startswith('"')
    assert "last-modified" in response.headers
    assert response.headers["content-disposition"] == 'attachment; filename="medium.bin"'


async def test_range_of_a_large_file_uses_the_exact_bytes(served: Served) -> None:
    data = served.files["random.bin"]
    start, stop = 1_000_003, 2_900_017
    response = await fetch(served, "random.bin", {"Range": f"bytes={start}-{stop - 1}"})
    assert response.status_code == 206
    assert response.content == data[start:stop]


async def test_head_with_range_has_206_headers_and_no_body(served: Served) -> None:
    response = await fetch(served, "medium.bin", {"Range": "bytes=10-19"}, method="HEAD")
    assert response.status_code == 206
    assert response.content == b""
    assert response.headers["content-range"] == "bytes 10-19/70001"
    assert response.headers["content-length"] == "10"


# --- unsatisfiable, ignored and refused ranges -----------------------------------------


@pytest.mark.parametrize(
    "value",
    ["bytes=70001-", "bytes=70001-70100", "bytes=999999-", "bytes=-0", "bytes=70001-,80000-"],
)
async def test_unsatisfiable_range_is_416_with_size(served: Served, value: str) -> None:
    response = await fetch(served, "medium.bin", {"Range": value})
    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */70001"
    assert response.headers["content-type"] == "application/json"
    assert list(response.json()) == ["error"]


async def test_unsatisfiable_range_on_head_is_416_without_body(served: Served) -> None:
    response = await fetch(served, "medium.bin", {"Range": "bytes=80000-"}, method="HEAD")
    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */70001"
    assert response.content == b""


async def test_one_satisfiable_range_among_unsatisfiable_ones_is_served(served: Served) -> None:
    response = await fetch(served, "medium.bin", {"Range": "bytes=90000-,5-9,80000-"})
    assert response.status_code == 206
    assert response.headers["content-range"] == "bytes 5-9/70001"
    assert response.content == served.files["medium.bin"][5:10]


@pytest.mark.parametrize("value", ["items=0-10", "0-10", "none"])
async def test_other_range_units_are_ignored(served: Served, value: str) -> None:
    response = await fetch(served, "medium.bin", {"Range": value})
    assert response.status_code == 200
    assert response.content == served.files["medium.bin"]


async def test_more_than_16_parts_is_a_plain_200(served: Served) -> None:
    specs = ",".join(f"{i * 100}-{i * 100 + 9}" for i in range(17))
    response = await fetch(served, "medium.bin", {"Range": f"bytes={specs}"})
    assert response.status_code == 200
    assert response.content == served.files["medium.bin"]
    assert "content-range" not in response.headers


async def test_exactly_16_parts_is_multipart(served: Served) -> None:
    data = served.files["medium.bin"]
    specs = ",".join(f"{i * 100}-{i * 100 + 9}" for i in range(16))
    response = await fetch(served, "medium.bin", {"Range": f"bytes={specs}"})
    pieces = parts_of(response, len(data))
    assert [interval for interval, _ in pieces] == [(i * 100, i * 100 + 10) for i in range(16)]
    for (start, stop), payload in pieces:
        assert payload == data[start:stop]


@pytest.mark.parametrize(
    "value", ["bytes=0-,0-", "bytes=-70001,0-10", "bytes=0-40000,30000-", "bytes=" + "0-9999," * 8]
)
async def test_ranges_adding_up_to_more_than_the_file_are_a_plain_200(
    served: Served, value: str
) -> None:
    response = await fetch(served, "medium.bin", {"Range": value.rstrip(",")})
    assert response.status_code == 200
    assert response.content == served.files["medium.bin"]


# --- multipart/byteranges --------------------------------------------------------------------


async def test_multipart_parts_are_sorted_and_parse_with_email(served: Served) -> None:
    data = served.files["medium.bin"]
    response = await fetch(served, "medium.bin", {"Range": "bytes=-100,500-599,0-99"})
    assert response.status_code == 206
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    parts = parse_multipart(content_type, response.content)
    assert [p["Content-Range"] for p in parts] == [
        "bytes 0-99/70001",
        "bytes 500-599/70001",
        "bytes 69901-70000/70001",
    ]
    for part in parts:
        assert part["Content-Type"] == "application/octet-stream"
        (start, stop), _ = parse_content_range(part["Content-Range"])
        assert part.get_payload(decode=True) == data[start:stop]


async def test_overlapping_ranges_are_coalesced(served: Served) -> None:
    data = served.files["medium.bin"]
    response = await fetch(served, "medium.bin", {"Range": "bytes=1000-1099,0-99,50-149"})
    pieces = parts_of(response, len(data))
    assert [interval for interval, _ in pieces] == [(0, 150), (1000, 1100)]
    assert [payload for _, payload in pieces] == [data[0:150], data[1000:1100]]


async def test_ranges_coalescing_into_one_give_a_single_part_206(served: Served) -> None:
    data = served.files["medium.bin"]
    response = await fetch(served, "medium.bin", {"Range": "bytes=0-9,5-14"})
    assert response.status_code == 206
    assert response.headers["content-range"] == "bytes 0-14/70001"
    assert response.content == data[0:15]


async def test_multipart_on_a_text_file_carries_its_type(served: Served) -> None:
    data = served.files["small.txt"]
    response = await fetch(served, "small.txt", {"Range": "bytes=0-4,10-14"})
    parts = parse_multipart(response.headers["content-type"], response.content)
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/plain"]
    assert [p.get_payload(decode=True) for p in parts] == [data[0:5], data[10:15]]


async def test_multipart_head_has_the_get_length(served: Served) -> None:
    value = {"Range": "bytes=0-9,100-109"}
    get = await fetch(served, "medium.bin", value)
    head = await fetch(served, "medium.bin", value, method="HEAD")
    assert head.status_code == 206
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    assert head.headers["content-type"].startswith("multipart/byteranges; boundary=")


spec_strategy = st.one_of(
    st.tuples(st.integers(0, 70_100), st.integers(0, 3000)).map(lambda t: (t[0], t[0] + t[1])),
    st.tuples(st.integers(0, 70_100), st.none()),
    st.tuples(st.none(), st.integers(0, 3000)),
    st.tuples(st.integers(0, 20), st.integers(60_000, 80_000)),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(specs=st.lists(spec_strategy, min_size=1, max_size=16))
async def test_any_valid_range_set_returns_exactly_the_file_slices(
    tmp_path: Path, specs: list[tuple[int | None, int | None]]
) -> None:
    header = "bytes=" + ",".join(spec_text(s) for s in specs)
    async with running_server(tmp_path) as served:
        data = served.files["medium.bin"]
        size = len(data)
        response = await fetch(served, "medium.bin", {"Range": header})
    wanted = [iv for iv in (resolve(s, size) for s in specs) if iv is not None]
    if not wanted:
        assert response.status_code == 416
        assert response.headers["content-range"] == f"bytes */{size}"
        return
    if sum(stop - start for start, stop in wanted) > size:
        assert response.status_code == 200, header
        assert response.content == data
        return
    pieces = parts_of(response, size)
    intervals = [interval for interval, _ in pieces]
    assert intervals == sorted(intervals), header
    for (start, stop), payload in pieces:
        assert 0 <= start < stop <= size
        assert payload == data[start:stop], header
    for (_, prev_stop), (next_start, _) in itertools.pairwise(intervals):
        assert prev_stop <= next_start, f"overlapping parts for {header}"
    assert merge(intervals) == merge(wanted), header
    assert len(pieces) <= len(wanted)


# --- If-Range -------------------------------------------------------------------------------


async def test_if_range_with_the_current_etag_honours_the_range(served: Served) -> None:
    etag = (await fetch(served, "medium.bin", {})).headers["etag"]
    response = await fetch(served, "medium.bin", {"Range": "bytes=0-9", "If-Range": etag})
    assert response.status_code == 206
    assert response.content == served.files["medium.bin"][:10]


@pytest.mark.parametrize("if_range", ['"stale-etag"', "W/{etag}", "garbage", "{etag}x"])
async def test_if_range_mismatch_sends_the_full_file(served: Served, if_range: str) -> None:
    etag = (await fetch(served, "medium.bin", {})).headers["etag"]
    value = if_range.replace("{etag}", etag)
    response = await fetch(served, "medium.bin", {"Range": "bytes=0-9", "If-Range": value})
    assert response.status_code == 200
    assert response.content == served.files["medium.bin"]
    assert "content-range" not in response.headers


async def test_if_range_with_the_exact_date_honours_the_range(served: Served) -> None:
    pin_mtime(served, "medium.bin")
    response = await fetch(served, "medium.bin", {"Range": "bytes=0-9", "If-Range": date(MTIME)})
    assert response.headers["last-modified"] == date(MTIME)
    assert response.status_code == 206
    assert response.content == served.files["medium.bin"][:10]


@pytest.mark.parametrize("offset", [-1, 1, 3600])
async def test_if_range_with_another_date_sends_the_full_file(served: Served, offset: int) -> None:
    pin_mtime(served, "medium.bin")
    headers = {"Range": "bytes=0-9", "If-Range": date(MTIME + offset)}
    response = await fetch(served, "medium.bin", headers)
    assert response.status_code == 200
    assert response.content == served.files["medium.bin"]


async def test_if_range_after_the_file_changed_sends_the_new_file(served: Served) -> None:
    etag = (await fetch(served, "small.txt", {})).headers["etag"]
    path = served.root / "small.txt"
    path.write_bytes(b"a brand new body\n")
    os.utime(path, (MTIME, MTIME))
    response = await fetch(served, "small.txt", {"Range": "bytes=0-3", "If-Range": etag})
    assert response.status_code == 200
    assert response.content == b"a brand new body\n"
    assert response.headers["etag"] != etag


# --- If-None-Match / If-Modified-Since -> 304 -------------------------------------------------


@pytest.mark.parametrize("template", ["{etag}", "W/{etag}", '"other", {etag}', "*"])
async def test_if_none_match_is_304(served: Served, template: str) -> None:
    etag = (await fetch(served, "medium.bin", {})).headers["etag"]
    for method in ("GET", "HEAD"):
        headers = {"If-None-Match": template.replace("{etag}", etag), "Range": "bytes=0-9"}
        response = await fetch(served, "medium.bin", headers, method=method)
        assert response.status_code == 304
        assert response.content == b""
        assert response.headers["etag"] == etag


async def test_if_none_match_other_tag_is_200(served: Served) -> None:
    response = await fetch(served, "medium.bin", {"If-None-Match": '"not-it"'})
    assert response.status_code == 200
    assert response.content == served.files["medium.bin"]


@pytest.mark.parametrize("offset", [0, 1, 86400])
async def test_if_modified_since_not_modified_is_304(served: Served, offset: int) -> None:
    pin_mtime(served, "medium.bin")
    response = await fetch(served, "medium.bin", {"If-Modified-Since": date(MTIME + offset)})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["last-modified"] == date(MTIME)


@pytest.mark.parametrize("value", [date(MTIME - 1), "not a date", date(MTIME - 86400)])
async def test_if_modified_since_modified_or_invalid_is_200(served: Served, value: str) -> None:
    pin_mtime(served, "medium.bin")
    response = await fetch(served, "medium.bin", {"If-Modified-Since": value})
    assert response.status_code == 200
    assert response.content == served.files["medium.bin"]


async def test_if_none_match_takes_precedence_over_if_modified_since(served: Served) -> None:
    pin_mtime(served, "medium.bin")
    headers = {"If-None-Match": '"not-it"', "If-Modified-Since": date(MTIME + 10)}
    assert (await fetch(served, "medium.bin", headers)).status_code == 200


# --- If-Match / If-Unmodified-Since -> 412 ----------------------------------------------------


@pytest.mark.parametrize("template", ['"not-it"', "W/{etag}", '"a", "b"'])
async def test_if_match_mismatch_is_412(served: Served, template: str) -> None:
    etag = (await fetch(served, "medium.bin", {})).headers["etag"]
    headers = {"If-Match": template.replace("{etag}", etag), "Range": "bytes=0-9"}
    response = await fetch(served, "medium.bin", headers)
    assert response.status_code == 412
    assert response.headers["content-type"] == "application/json"
    assert list(response.json()) == ["error"]


@pytest.mark.parametrize("template", ["{etag}", '"other", {etag}', "*"])
async def test_if_match_match_proceeds(served: Served, template: str) -> None:
    etag = (await fetch(served, "medium.bin", {})).headers["etag"]
    headers = {"If-Match": template.replace("{etag}", etag), "Range": "bytes=0-9"}
    response = await fetch(served, "medium.bin", headers)
    assert response.status_code == 206
    assert response.content == served.files["medium.bin"][:10]


async def test_if_unmodified_since(served: Served) -> None:
    pin_mtime(served, "medium.bin")
    before = await fetch(served, "medium.bin", {"If-Unmodified-Since": date(MTIME - 1)})
    assert before.status_code == 412
    assert list(before.json()) == ["error"]
    same = await fetch(served, "medium.bin", {"If-Unmodified-Since": date(MTIME)})
    assert same.status_code == 200
    assert same.content == served.files["medium.bin"]


async def test_query_token_route_supports_ranges_too(served: Served) -> None:
    async with served.client() as client:
        response = await client.get(
            "/api/download",
            params={"filepath": "medium.bin", "token": TOKEN},
            headers={"Range": "bytes=-3"},
        )
    assert response.status_code == 206
    assert response.content == served.files["medium.bin"][-3:]
