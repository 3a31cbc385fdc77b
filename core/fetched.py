"""What a fetch gives back: :class:`Fetched` (a response whose body is read into the
caller's buffers), and :class:`FetchError` (a failed fetch, with its seed-001 key).

:func:`as_fetch_error` turns what the layers under a fetch raise (httpx, h11, the network
policy, the pump in :mod:`slipstream.upstream`, sockets) into a :class:`FetchError`;
:func:`fetch_errors` does it around a block.  :mod:`slipstream.fetch` re-exports all of
them.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Final, Literal, Protocol

import h11
import httpcore
import httpx
import trio

from .errors import SlipstreamError
from .netpolicy import UrlRejected
from .upstream import BodyEndedEarly, BodyTimeout, Exchange, HeadFailed, Relayer

__all__ = [
    "BodySource",
    "FetchError",
    "FetchKey",
    "Fetched",
    "as_fetch_error",
    "fetch_errors",
]

CHUNK_SIZE: Final = 256 * 1024
"""Size of the ``bytes`` chunks :meth:`Fetched.chunks` yields."""

FetchKey = Literal["INVALID_URL", "DOMAIN_BLOCKED", "NETWORK_ERROR", "DOWNLOAD_TIMEOUT"]


class FetchError(SlipstreamError):
    """An outbound request that failed; ``key`` (also its ``code``) is the seed's error key.

    Its status is 502 (Bad Gateway); callers usually turn it into their own surface's
    error (a job's failure key, a refused start, the zip service's keys) first.
    """

    def __init__(self, key: FetchKey, message: str) -> None:
        super().__init__(message, code=key, status=502)
        self.key: FetchKey = key


class BodySource(Protocol):
    """Where a response body comes from: ``await readinto(buffer)`` -> bytes read (0: end)."""

    async def readinto(self, buffer: memoryview, /) -> int: ...


class _ResponseBody:
    """An httpx response's raw body as a :class:`BodySource` (TLS and non-GET requests)."""

    __slots__ = ("_chunks", "_left")

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.aiter_raw()
        self._left = memoryview(b"")

    async def readinto(self, buffer: memoryview, /) -> int:
        left = self._left
        while not left:
            try:
                left = memoryview(await anext(self._chunks))
            except StopAsyncIteration:
                return 0
        count = min(len(buffer), len(left))
        buffer[:count] = left[:count]
        self._left = left[count:]
        return count


class Fetched:
    """A response whose head has arrived; the body is read with :meth:`readinto`."""

    __slots__ = ("_body", "headers", "status", "url")

    def __init__(self, status: int, headers: httpx.Headers, url: str, body: BodySource) -> None:
        self.status = status
        """The HTTP status code."""
        self.headers = headers
        """The response headers (case-insensitive)."""
        self.url = url
        """The final URL (after redirects)."""
        self._body = body

    @classmethod
    def from_response(cls, response: httpx.Response, url: str) -> Fetched:
        """An httpx response (head received, body unread) as a :class:`Fetched`."""
        return cls(response.status_code, response.headers, url, _ResponseBody(response))

    async def readinto(self, buffer: memoryview) -> int:
        """Read body bytes, exactly as sent (no content decoding), into ``buffer``;
        how many (0 at the end of the body).  Raises :class:`FetchError`."""
        try:
            return await self._body.readinto(buffer)
        except Exception as exc:
            converted = as_fetch_error(exc)
            if converted is exc:
                raise
            raise converted from exc

    async def fill(self, buffer: memoryview) -> int:
        """:meth:`readinto` until ``buffer`` is full or the body ends; the bytes read
        (fewer than ``len(buffer)`` only at the end of the body)."""
        filled = 0
        while filled < len(buffer):
            count = await self.readinto(buffer[filled:])
            if not count:
                break
            filled += count
        return filled

    @property
    def can_splice(self) -> bool:
        """Whether :meth:`splice_to` works for this body (plaintext, Content-Length, Linux)."""
        return isinstance(self._body, Exchange) and self._body.can_splice

    @property
    def spliced(self) -> int:
        """Body bytes :meth:`splice_to` has delivered so far (also after it raised)."""
        return self._body.spliced if isinstance(self._body, Exchange) else 0

    async def splice_to(self, out: trio.socket.SocketType, count: int, send_timeout: float) -> None:
        """Move the next ``count`` body bytes to the socket ``out`` with ``os.splice``
        (only when :attr:`can_splice`).  Raises :class:`FetchError` for the upstream,
        ``trio.BrokenResourceError`` / ``trio.TooSlowError`` for ``out``."""
        if not isinstance(self._body, Exchange):
            raise TypeError("this body cannot be spliced")
        try:
            await self._body.splice_to(out, count, send_timeout)
        except (BodyEndedEarly, BodyTimeout) as exc:
            raise as_fetch_error(exc) from exc

    async def relay_through(self, relayer: Relayer, count: int) -> None:
        """Have ``relayer`` move the next ``count`` body bytes (only when
        :attr:`can_splice`; see :meth:`Exchange.relay_through`).  Raises
        :class:`FetchError` for the upstream, and what ``relayer`` raises for the client."""
        if not isinstance(self._body, Exchange):
            raise TypeError("this body cannot be relayed")
        try:
            await self._body.relay_through(relayer, count)
        except (BodyEndedEarly, BodyTimeout) as exc:
            raise as_fetch_error(exc) from exc

    async def chunks(self, size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """The body as ``bytes`` chunks of at most ``size`` (a copy each: the data plane
        reads with :meth:`readinto` into its own buffers instead)."""
        buffer = memoryview(bytearray(size))
        while count := await self.readinto(buffer):
            yield bytes(buffer[:count])


def as_fetch_error(exc: Exception) -> Exception:
    """The :class:`FetchError` an httpx / h11 / policy / resolver / socket exception
    means; any other exception is returned as it is."""
    if isinstance(exc, UrlRejected):
        return FetchError(exc.key, exc.message)
    if isinstance(exc, httpx.InvalidURL):  # not an HTTPError: a URL our parser took, httpx did not
        return FetchError("INVALID_URL", f"invalid URL: {exc}")
    if isinstance(exc, httpx.ReadTimeout | BodyTimeout) or (
        isinstance(exc, HeadFailed) and exc.timeout
    ):
        return FetchError("DOWNLOAD_TIMEOUT", "no data received within the read timeout")
    if isinstance(exc, httpx.TimeoutException | httpcore.TimeoutException):
        return FetchError("NETWORK_ERROR", f"timed out: {type(exc).__name__}")
    if isinstance(exc, BodyEndedEarly):
        return FetchError("NETWORK_ERROR", f"upstream body ended early: {exc}")
    if isinstance(
        exc,
        HeadFailed
        | httpx.HTTPError
        | httpcore.NetworkError
        | h11.ProtocolError
        | UnicodeEncodeError
        | OSError
        | ssl.SSLError,
    ):
        return FetchError("NETWORK_ERROR", str(exc) or type(exc).__name__)
    return exc


@contextlib.contextmanager
def fetch_errors() -> Iterator[None]:
    """Turn httpx / h11 / policy / resolver / socket exceptions into :class:`FetchError`."""
    try:
        yield
    except Exception as exc:
        converted = as_fetch_error(exc)
        if converted is exc:
            raise
        raise converted from exc
