"""Probes and member reads of :mod:`slipstream.zip.remote` against the loopback upstream."""

from __future__ import annotations

import pytest
import trio

from slipstream.ext import NEED_MORE, ResponseHead, parse_response_head
from slipstream.fetch import Fetcher, FetchError
from slipstream.netpolicy import NetworkPolicy, Target
from slipstream.zip.errors import ZipError
from slipstream.zip.remote import (
    MemberChanged,
    UpstreamRefused,
    plain_answer,
    probe_all,
    read_member,
)
from tests.helpers.upstream import Blob, Status, Upstream

OPEN = NetworkPolicy(allow_private_networks=True)


def anything(target: Target) -> None:
    """An allow list that allows every URI."""


async def test_probes_report_size_validators_and_name(upstream: Upstream) -> None:
    url = upstream.add("/a.bin", Blob(b"x" * 1234, content_disposition='attachment; filename="n"'))
    async with Fetcher(OPEN) as fetcher:
        (found,) = await probe_all(fetcher, [url], [], anything)
    assert found.size == 1234
    assert found.etag is not None and found.validator == found.etag
    assert found.disposition == 'attachment; filename="n"'
    assert upstream.requests[0].header("range") == "bytes=0-0"


async def test_probes_that_outlast_the_total_timeout_fail(upstream: Upstream) -> None:
    fast = upstream.add("/fast", Blob(b"quick"))
    slow = upstream.add("/slow", Blob(b"late", delay_head=5.0))
    async with Fetcher(OPEN) as fetcher:
        started = trio.current_time()
        with pytest.raises(ZipError) as info:
            await probe_all(fetcher, [fast, slow], [], anything, total_timeout=0.5)
        assert trio.current_time() - started < 3
    assert info.value.key == "FAILED_FETCHING_URIS"
    assert info.value.records == (slow,)


async def test_read_member_returns_exactly_the_range(upstream: Upstream) -> None:
    data = bytes(range(256)) * 100
    url = upstream.add("/m", Blob(data))
    async with Fetcher(OPEN) as fetcher:
        (obj,) = await probe_all(fetcher, [url], [], anything)
        got = b"".join(
            [chunk async for chunk in read_member(fetcher, obj, 1000, 5000, [], anything)]
        )
    assert got == data[1000:6000]
    assert upstream.requests[-1].header("range") == "bytes=1000-5999"


async def test_an_upstream_ignoring_range_is_read_from_its_start(upstream: Upstream) -> None:
    data = bytes(range(256)) * 1000
    url = upstream.add("/plain", Blob(data, ranges=False))
    async with Fetcher(OPEN) as fetcher:
        (obj,) = await probe_all(fetcher, [url], [], anything)
        assert obj.ranges is False and obj.size == len(data)
        got = b"".join(
            [chunk async for chunk in read_member(fetcher, obj, 70_000, 5000, [], anything)]
        )
        assert got == data[70_000:75_000]
        with pytest.raises(FetchError, match="over the limit"):
            async for _ in read_member(fetcher, obj, 70_000, 10, [], anything, skip_limit=69_999):
                pass
    ranged = upstream.add("/ranged", Blob(data))
    async with Fetcher(OPEN) as fetcher:
        (obj,) = await probe_all(fetcher, [ranged], [], anything)
    assert obj.ranges is True


@pytest.mark.parametrize(("status", "tries"), [(404, 1), (403, 1), (503, 3)])
async def test_error_statuses_fail_the_read_and_only_transient_ones_are_retried(
    upstream: Upstream, status: int, tries: int
) -> None:
    url = upstream.add("/m", Blob(b"x" * 100))
    async with Fetcher(OPEN) as fetcher:
        (obj,) = await probe_all(fetcher, [url], [], anything)
        upstream.add("/m", Status(status, b"no"))
        upstream.reset()
        with pytest.raises(UpstreamRefused) as info:
            async for _ in read_member(fetcher, obj, 10, 20, [], anything):
                pass
    assert info.value.upstream_status == status
    assert len(upstream.requests_for("/m")) == tries


async def test_a_shorter_object_is_a_changed_member(upstream: Upstream) -> None:
    url = upstream.add("/m", Blob(b"x" * 100, etag=None, last_modified=None))
    async with Fetcher(OPEN) as fetcher:
        (obj,) = await probe_all(fetcher, [url], [], anything)
        upstream.add("/m", Blob(b"x" * 50, etag=None, last_modified=None))
        with pytest.raises(MemberChanged):
            async for _ in read_member(fetcher, obj, 60, 20, [], anything):
                pass


@pytest.mark.parametrize(
    "content_range",
    [
        "bytes 0-0/99999999999999999999999",
        "bytes 0-0/9223372036854775808",  # 2**63: one past what a Content-Length carries
        "bytes 0-0/" + "9" * 5000,
        "bytes 0-0/0",
        "bytes 0-1/5",
        "bytes 1-0/5",
        "bytes 0-0/5x",
        "bytes 0-0/*",
        "bytes 0-0/+5",
        "bytes 0-0/5_0",
    ],
)
async def test_a_probe_with_an_absurd_or_malformed_size_fails(
    upstream: Upstream, content_range: str
) -> None:
    url = upstream.add("/m", Status(206, b"x", [("Content-Range", content_range)]))
    async with Fetcher(OPEN) as fetcher:
        with pytest.raises(ZipError) as info:
            await probe_all(fetcher, [url], [], anything)
    assert info.value.key == "FAILED_FETCHING_URIS"
    assert info.value.records == (url,)


async def test_the_largest_size_a_probe_accepts(upstream: Upstream) -> None:
    url = upstream.add("/m", Status(206, b"x", [("Content-Range", f"bytes 0-0/{2**63 - 1}")]))
    async with Fetcher(OPEN) as fetcher:
        (found,) = await probe_all(fetcher, [url], [], anything)
    assert found.size == 2**63 - 1


@pytest.mark.parametrize("length", [10**23, 2**63])
async def test_an_absurd_content_length_of_a_200_fails(upstream: Upstream, length: int) -> None:
    url = upstream.add("/m", Blob(b"x", ranges=False, lie_length=length))
    async with Fetcher(OPEN) as fetcher:
        with pytest.raises(ZipError) as info:
            await probe_all(fetcher, [url], [], anything)
    assert info.value.records == (url,)


async def test_plain_answer_takes_only_the_exact_range_of_the_probed_object(
    upstream: Upstream,
) -> None:
    data = bytes(range(256)) * 100
    url = upstream.add("/m", Blob(data, etag='"v1"'))
    plain = upstream.add("/plain", Blob(data, ranges=False))

    async def answered(uri: str, first: int, last: int, offset: int, length: int) -> bool:
        request = fetcher.plan_request(uri, [("Range", f"bytes={first}-{last}")])
        assert request is not None
        async with await trio.open_tcp_stream(request.host, request.port) as stream:
            await stream.send_all(request.data)
            received = bytearray()
            while not isinstance(head := parse_response_head(received, 0, 65536, 64), ResponseHead):
                assert head == NEED_MORE
                received += await stream.receive_some()
        return plain_answer(head.status, head.headers, objs[uri], offset, length)

    async with Fetcher(OPEN) as fetcher:
        objs = {o.uri: o for o in await probe_all(fetcher, [url, plain], [], anything)}
        assert await answered(url, 1000, 5999, 1000, 5000)
        assert not await answered(url, 1000, 5999, 1001, 5000)  # not the range asked
        assert not await answered(url, 1000, 5999, 1000, 4999)
        assert await answered(plain, 0, 99, 0, len(data))  # a 200 of the whole object
        assert not plain_answer(206, [(b"etag", b'"v1"')] * 2, objs[url], 0, 10)  # two ETags
        assert not await answered(plain, 100, 199, 100, 100)  # a 200: bytes to skip
        upstream.add("/m", Blob(data, etag='"v2"'))
        assert not await answered(url, 0, 9, 0, 10)  # the object changed
        upstream.add("/m", Blob(data[:-1], etag='"v1"'))
        assert not await answered(url, 0, 9, 0, 10)  # its size changed
