"""Guarded outbound HTTP: the network policy inside the connection layer of every request.

:class:`Fetcher` is what remote-download jobs and the zip service use to reach
client-supplied URLs.  Every hop of a request goes through the same checks:

1. the URL is parsed and normalised with :func:`~slipstream.netpolicy.parse_target`
   (``INVALID_URL``) and its host checked against the domain lists (``DOMAIN_BLOCKED``),
   plus an optional caller check (the zip service's prefix allow list);
2. httpx opens connections through :class:`GuardedBackend`, an httpcore network backend
   that resolves the host **once**, checks every address with the policy, and connects
   only to a checked address (so a second lookup cannot rebind the name: no DNS
   rebinding).  TLS still verifies the certificate against the host name, because
   httpcore passes the name (not the address) as ``server_hostname``.

A plaintext ``GET`` is sent by :mod:`slipstream.upstream` (h11 for the heads, the body
read straight from the socket into the caller's buffers, keep-alive connections per
host); ``https://`` and other methods by httpx.  Both open their connections through the
same :class:`GuardedBackend`.  What a fetch gives back (:class:`Fetched`,
:class:`FetchError`) lives in :mod:`slipstream.fetched` and is re-exported here.

Redirects are followed by :meth:`Fetcher.stream` itself (at most ``max_redirects``),
each hop checked as above; credentials the caller added are dropped when a redirect
leaves the original origin.  Environment proxies are ignored (``trust_env=False``): a
proxy would connect somewhere the policy never saw.

Failures surface as :class:`FetchError` with a seed-001 key: ``INVALID_URL``,
``DOMAIN_BLOCKED``, ``NETWORK_ERROR`` (DNS, connect, reset, protocol errors, too many
redirects) or ``DOWNLOAD_TIMEOUT`` (no byte within the read timeout).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Final
from urllib.parse import urljoin

import httpcore
import httpx
import trio

from .buffers import BufferPool
from .fetched import BodySource, Fetched, FetchError, FetchKey, as_fetch_error, fetch_errors
from .netpolicy import NetworkPolicy, Target, UrlRejected, parse_target
from .upstream import ConnectionPool, exchange
from .upstream_request import PlannedRequest, RangeTemplate, request_head

__all__ = [
    "BodySource",
    "Dialer",
    "FetchError",
    "FetchKey",
    "Fetched",
    "Fetcher",
    "GuardedBackend",
    "Resolver",
    "as_fetch_error",
    "as_sent",
    "fetch_errors",
    "system_resolver",
]

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``await resolver(host, port)`` -> numeric addresses (raise ``OSError`` when it fails)."""

Dialer = Callable[[str, int, "float | None"], Awaitable[httpcore.AsyncNetworkStream]]
"""``await dialer(address, port, timeout)`` -> a connected stream to a *checked* address.

The default connects with httpcore's Trio backend.  Tests substitute one that maps a
public-looking address to a loopback upstream, to exercise redirects and rebinding.
"""

REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_CREDENTIAL_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the system resolver (``getaddrinfo`` in a worker thread)."""
    infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


READ_SIZE: Final = 256 * 1024
"""Bytes asked of the socket per read (httpcore asks for 64 KiB; larger reads double the
throughput of one connection, measured on loopback)."""
BODY_BUFFER: Final = 1024 * 1024
"""Size of the pooled buffers that bodies are read into (:attr:`Fetcher.buffers`)."""
BODY_BUFFERS_KEPT: Final = 16
"""Idle body buffers kept for reuse (16 MiB at most)."""
CHECKED_KEPT: Final = 4096
"""URLs whose check passed, remembered per ``check_url`` (:meth:`Fetcher.check`)."""


class _LargeReads(httpcore.AsyncNetworkStream):
    """Wraps a connected stream so each read may return up to :data:`READ_SIZE` bytes."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max(max_bytes, READ_SIZE), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _LargeReads(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to addresses the policy allows.

    ``connect_tcp`` resolves the host once with ``resolver``, refuses the whole host if
    any address is refused (``UrlRejected("DOMAIN_BLOCKED")``), and then tries the
    checked addresses in order, connecting by address so no second lookup happens.
    ``dialer`` makes the connection to one checked address (see :data:`Dialer`).
    """

    def __init__(
        self,
        policy: NetworkPolicy,
        resolver: Resolver = system_resolver,
        dialer: Dialer | None = None,
    ) -> None:
        self.policy = policy
        self.resolver = resolver
        self._inner = httpcore.TrioBackend()
        self.dialer: Dialer = dialer or self._dial

    async def _dial(
        self, address: str, port: int, timeout: float | None
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_tcp(address, port, timeout, None, [])

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        target = Target(scheme="", host=host, port=port, url="")
        with trio.fail_after(timeout if timeout is not None else float("inf")):
            try:
                found = await self.resolver(host, port)
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = self.policy.check_addresses(target, found)
        error: Exception | None = None
        for address in addresses:
            try:
                return _LargeReads(await self.dialer(address, port, timeout))
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None  # check_addresses never returns an empty list
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are never fetched from")

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)


def as_sent(target: Target) -> httpx.URL:
    """``target.url`` as httpx will send it; ``UrlRejected("INVALID_URL")`` if httpx
    would change a byte of it (or ``httpx.InvalidURL`` if it cannot parse it).

    :func:`~slipstream.netpolicy.parse_target` produces URLs that httpx keeps as they
    are (its dot-segment removal and re-quoting have nothing left to do); this makes
    "the URL checked is the URL sent" a checked fact rather than an assumption.
    """
    url = httpx.URL(target.url)
    netloc = target.url.split("/", 3)[2]
    if str(url) != target.url or url.netloc.decode("ascii") != netloc:
        raise UrlRejected("INVALID_URL", f"the HTTP client would change {target.url!r}")
    return url


class Fetcher:
    """Outbound HTTP client for untrusted URLs; use as ``async with Fetcher(...) as f``.

    ``check_url(target)`` runs for every hop after the policy's domain lists (raise
    ``UrlRejected`` to refuse).  ``read_timeout`` is the longest wait for the next byte.

    Plaintext ``GET`` requests go through :mod:`slipstream.upstream` (h11 for the head,
    the body read from the socket into the caller's buffer, keep-alive connections per
    origin); ``https://`` and other methods through httpx.  ``pump=False`` sends
    everything through httpx (the reference path the tests compare with).
    ``near_receive_buffer`` sets the receive buffer of those connections when they go to
    a near upstream (see :func:`slipstream.upstream_pool.size_near_receive_buffer`).
    """

    def __init__(
        self,
        policy: NetworkPolicy,
        *,
        resolver: Resolver = system_resolver,
        max_redirects: int = 5,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        max_connections: int = 100,
        user_agent: str = "slipstream",
        dialer: Dialer | None = None,
        pump: bool = True,
        max_idle_per_host: int = 8,
        near_receive_buffer: int | None = None,
    ) -> None:
        self.policy = policy
        self.max_redirects = max_redirects
        self.backend = GuardedBackend(policy, resolver, dialer)
        self._user_agent = user_agent
        self._read_timeout = read_timeout
        self._pump = pump
        self.pool = ConnectionPool(
            self.backend.connect_tcp,
            connect_timeout=connect_timeout,
            max_idle=max_idle_per_host,
            near_receive_buffer=near_receive_buffer,
        )
        """Idle plaintext connections the pumped requests reuse."""
        self.buffers = BufferPool(BODY_BUFFER, BODY_BUFFERS_KEPT)
        """Aligned buffers that callers read bodies into (:meth:`Fetched.readinto`)."""
        self._memo: dict[tuple[str, Callable[[Target], None] | None], Target] = {}
        self._templates: dict[tuple[str, tuple[tuple[str, str], ...]], RangeTemplate | None] = {}
        """Request templates of :meth:`plan_request` by (netloc, headers)."""
        """URLs whose :meth:`check` passed (with the ``check_url`` they passed)."""
        self._memo_policy = policy
        """The policy those verdicts were given under (a new one forgets them)."""
        transport = httpx.AsyncHTTPTransport(trust_env=False)
        # httpx has no public way to give its transport a network backend; the pool it
        # builds is replaced by one with the same settings plus our guarded backend, so
        # the policy runs inside the connection layer and no other path can connect.
        if not hasattr(transport, "_pool"):  # pragma: no cover - guards an httpx upgrade
            raise RuntimeError("unsupported httpx version: AsyncHTTPTransport has no _pool")
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=max_connections,
            max_keepalive_connections=max(1, max_connections // 5),
            keepalive_expiry=5.0,
            network_backend=self.backend,
        )
        self._client = httpx.AsyncClient(
            transport=transport,
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(
                connect=connect_timeout, read=read_timeout, write=read_timeout, pool=read_timeout
            ),
        )

    async def __aenter__(self) -> Fetcher:
        await self._client.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await self.pool.aclose()
            await self._client.aclose()

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self.__aexit__(None, None, None)

    def check(self, url: str, check_url: Callable[[Target], None] | None = None) -> Target:
        """Parse ``url`` and apply the domain lists and ``check_url``; raise FetchError.

        The returned target's ``url`` is what :meth:`stream` sends, byte for byte: it is
        refused (``INVALID_URL``) unless httpx takes it unchanged.

        A URL that passed is remembered (the last :data:`CHECKED_KEPT`, per
        ``check_url``), so asking again costs a dictionary lookup: a zip of a thousand
        members checks each URL once, not at every read.  That relies on the verdict
        being a function of the URL alone, which it is: the policy is frozen, and a
        ``check_url`` must be a pure function of its target (the zip allow list is).
        The addresses are still checked at every connection (:class:`GuardedBackend`),
        so a name that resolves elsewhere later is judged again.  A refused URL is never
        remembered: it is checked, and refused, every time.
        """
        key = (url, check_url)
        memo = self._memo
        target = memo.get(key)
        if target is not None and self._memo_policy is self.policy:
            return target
        target = self._checked(url, check_url)
        with fetch_errors():
            as_sent(target)
        if self._memo_policy is not self.policy:
            memo.clear()
            self._memo_policy = self.policy
        elif len(memo) >= CHECKED_KEPT:
            del memo[next(iter(memo))]  # the oldest
        memo[key] = target
        return target

    def _checked(self, url: str, check_url: Callable[[Target], None] | None) -> Target:
        with fetch_errors():
            target = parse_target(url)
            self.policy.check_host(target)
            if check_url is not None:
                check_url(target)
        return target

    async def preflight(
        self,
        url: str,
        check_url: Callable[[Target], None] | None = None,
        *,
        timeout: float = 5.0,
    ) -> Target:
        """:meth:`check` plus one resolution of the host, to refuse early.

        Lets a caller answer ``DOMAIN_BLOCKED`` before starting work.  A lookup that fails
        or is slow is not an error here (the fetch itself will report it); the check the
        connection makes at connect time stays the one that counts.
        """
        target = self._checked(url, check_url)
        found: Sequence[str] = ()
        with trio.move_on_after(timeout), contextlib.suppress(OSError):
            found = await self.backend.resolver(target.host, target.port)
        with fetch_errors():
            if found:
                self.policy.check_addresses(target, found)
            as_sent(target)  # refused by httpx (e.g. "999.1.1.1"): answer 400 now
        return target

    @property
    def pumped(self) -> bool:
        """Whether plain ``http://`` GETs go through :mod:`slipstream.upstream` (and
        :meth:`plan_request` plans them), not httpx."""
        return self._pump

    def plan_request(
        self,
        url: str,
        headers: Sequence[tuple[str, str]] = (),
        *,
        check_url: Callable[[Target], None] | None = None,
        byte_range: tuple[int, int] | None = None,
    ) -> PlannedRequest | None:
        """The bytes of ``GET url`` as :meth:`stream` would write them, and where to, for
        a caller that writes the request itself on a connection from :attr:`pool` (a
        zip reply's send thread); None unless it is a plain ``http://`` request of the
        common shape whose URL passes the checks (:meth:`stream` reports why not).

        The headers are those :meth:`stream` sends, with ``byte_range`` (first, last) as
        a ``Range`` after them; the URL is checked the same way, and the connection's
        address is checked by the pool's guarded connector.  With ``byte_range`` the
        head is written from a :class:`RangeTemplate` kept per origin and header set (a
        zip asks many objects of one origin with the same headers)."""
        if not self._pump:
            return None
        try:
            target = self.check(url, check_url)
        except FetchError:
            return None
        if target.scheme != "http":
            return None
        try:
            if byte_range is None:
                path, lines = self._request_lines(target, self._headers_sent(headers))
                data = request_head("GET", path, lines)
            else:
                data = self._ranged_head(target, headers, *byte_range)
        except UnicodeEncodeError:
            return None
        if data is None:
            return None
        return PlannedRequest(target.host, target.port, data, target.url, self._read_timeout)

    def _ranged_head(
        self, target: Target, headers: Sequence[tuple[str, str]], first: int, last: int
    ) -> bytes | None:
        netloc, _, path = target.url.split("://", 1)[1].partition("/")
        key = (netloc, tuple(headers))
        templates = self._templates
        if key in templates:
            template = templates[key]
        else:
            _, lines = self._request_lines(target, self._headers_sent(headers))
            template = RangeTemplate.of(lines)
            if len(templates) >= CHECKED_KEPT:
                templates.clear()
            templates[key] = template
        if template is None:
            return None
        return template.head(b"/" + path.encode("ascii"), first, last)

    def _headers_sent(self, headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """``headers`` with the fetcher's own (User-Agent, Accept-Encoding) unless given."""
        base = [("User-Agent", self._user_agent), ("Accept-Encoding", "identity")]
        names = {name.lower() for name, _ in headers}
        return [h for h in base if h[0].lower() not in names] + list(headers)

    @staticmethod
    def _request_lines(
        target: Target, headers: Sequence[tuple[str, str]]
    ) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """The request target and the header lines (Host first) of a pumped request."""
        # check() has made sure httpx would send target.url unchanged (as_sent), so its
        # netloc and path+query are the Host and the request target, as bytes.
        netloc, _, path = target.url.split("://", 1)[1].partition("/")
        lines = [(b"Host", netloc.encode("ascii"))]
        lines += [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
        return b"/" + path.encode("ascii"), lines

    @contextlib.asynccontextmanager
    async def stream(
        self,
        url: str,
        headers: Sequence[tuple[str, str]] = (),
        *,
        method: str = "GET",
        check_url: Callable[[Target], None] | None = None,
    ) -> AsyncIterator[Fetched]:
        """Send ``method url`` and yield the final response (after redirects), unread.

        The response is closed when the block exits.  ``Accept-Encoding: identity`` is
        sent unless ``headers`` say otherwise, so bytes arrive as stored.
        """
        sent = self._headers_sent(headers)
        target = self.check(url, check_url)
        origin = (target.scheme, target.host, target.port)
        for _hop in range(self.max_redirects + 1):
            async with self._send(target, method, sent) as response:
                location = response.headers.get("location")
                if response.status not in REDIRECT_STATUSES or not location:
                    yield response
                    return
            target = self.check(urljoin(target.url, location), check_url)
            if (target.scheme, target.host, target.port) != origin:
                sent = [h for h in sent if h[0].lower() not in _CREDENTIAL_HEADERS]
            if response.status == 303:
                method = "GET" if method != "HEAD" else method
        raise FetchError("NETWORK_ERROR", f"more than {self.max_redirects} redirects")

    def _send(
        self, target: Target, method: str, headers: Sequence[tuple[str, str]]
    ) -> contextlib.AbstractAsyncContextManager[Fetched]:
        if self._pump and method == "GET" and target.scheme == "http":
            return self._send_pumped(target, method, headers)
        return self._send_httpx(target, method, headers)

    @contextlib.asynccontextmanager
    async def _send_httpx(
        self, target: Target, method: str, headers: Sequence[tuple[str, str]]
    ) -> AsyncIterator[Fetched]:
        with fetch_errors():
            request = self._client.build_request(method, as_sent(target), headers=headers)
            response = await self._client.send(request, stream=True)
        try:
            yield Fetched.from_response(response, target.url)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await response.aclose()

    @contextlib.asynccontextmanager
    async def _send_pumped(
        self, target: Target, method: str, headers: Sequence[tuple[str, str]]
    ) -> AsyncIterator[Fetched]:
        with fetch_errors():
            path, lines = self._request_lines(target, headers)
            answer = await exchange(
                self.pool,
                target.host,
                target.port,
                method,
                path,
                lines,
                read_timeout=self._read_timeout,
            )
        try:
            yield Fetched(answer.status, httpx.Headers(answer.headers), target.url, answer)
        finally:
            await answer.finish()
