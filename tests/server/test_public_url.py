"""The public URL: required with a wildcard listening address, and the base of the zip
service's ``303 Location`` when configured (relative otherwise)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

from slipstream.server import Config, Server
from slipstream.server.config import ConfigError, is_wildcard_host
from tests.helpers.server import StartServer
from tests.helpers.upstream import Blob, Upstream
from tests.helpers.zip import fetch, form_fields, post


@pytest.mark.parametrize(
    "host",
    ["0.0.0.0", "::", "[::]", "0", "0x0", "0.0", "00", "", "*", "::0", "0:0::0", "::ffff:0.0.0.0"],
)
def test_wildcard_forms(host: str) -> None:
    assert is_wildcard_host(host)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "::1",
        "localhost",
        "10.0.0.1",
        "files.example",
        "::ffff:127.0.0.1",
        "fe80::1%lo",
    ],
)
def test_not_wildcards(host: str) -> None:
    assert not is_wildcard_host(host)


def test_embedding_refuses_a_wildcard_host_without_a_public_url(tmp_path: Path) -> None:
    config = Config(root=tmp_path / "root", host="0.0.0.0", port=0, tokens=["t"])
    with pytest.raises(ConfigError, match="public URL"):
        config.prepare()
    assert not (tmp_path / "root").exists()
    config.public_url = "https://files.example.com"
    config.prepare()
    assert (tmp_path / "root").is_dir()


@pytest.mark.parametrize(
    ("public_url", "prefix"),
    [
        ("https://files.example.com/base/", "https://files.example.com/base/stream/"),
        (None, "/stream/"),
    ],
)
async def test_zip_303_location_is_absolute_under_a_public_url(
    start_server: StartServer, upstream: Upstream, public_url: str | None, prefix: str
) -> None:
    upstream.add("/a.bin", Blob(b"a" * 100))
    overrides = {} if public_url is None else {"public_url": public_url}
    served = await start_server(zip_allow_prefixes=[upstream.url("/")], **overrides)
    reply = await post(served, fields=form_fields([upstream.url("/a.bin")]))
    assert reply.status_code == 303, reply.text
    location = reply.headers["location"]
    assert location.startswith(prefix)
    stream = "/stream/" + location.removeprefix(prefix)
    assert (await fetch(served, stream, "HEAD")).status_code == 200


class EverywhereResolver(trio.abc.HostnameResolver):
    """Resolves every name to the IPv4 wildcard address."""

    async def getaddrinfo(
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[
        tuple[
            socket.AddressFamily,
            socket.SocketKind,
            int,
            str,
            tuple[str, int] | tuple[str, int, int, int] | tuple[int, bytes],
        ]
    ]:
        number = int(port) if port is not None else 0
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("0.0.0.0", number))]

    async def getnameinfo(self, sockaddr: tuple[str, int], flags: int) -> tuple[str, str]:
        raise NotImplementedError


async def test_a_name_that_resolves_to_a_wildcard_address_is_refused_too(tmp_path: Path) -> None:
    previous = trio.socket.set_custom_hostname_resolver(EverywhereResolver())
    try:
        config = Config(root=tmp_path / "root", host="everywhere.test", port=0, tokens=["t"])
        server = Server(config)
        with trio.fail_after(10), pytest.raises(ConfigError, match="every interface"):
            await server.run()  # serving here instead of refusing would be the bug
    finally:
        trio.socket.set_custom_hostname_resolver(previous)
