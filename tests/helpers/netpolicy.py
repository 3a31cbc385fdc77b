"""Plain helpers of the network-policy tests: resolvers that never query DNS, the key of a
rejection."""

from __future__ import annotations

import socket
from collections.abc import Sequence

import pytest

from slipstream.netpolicy import UrlRejected


def numeric_resolver(host: str, port: int) -> list[str]:
    """The real ``getaddrinfo``, restricted to numeric hosts (never a DNS query)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    return [str(info[4][0]) for info in infos]


class FakeResolver:
    """An injected resolver with a fixed table that records its calls."""

    def __init__(self, table: dict[str, Sequence[str]]) -> None:
        self.table = table
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append((host, port))
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


def rejection(exc_info: pytest.ExceptionInfo[UrlRejected]) -> str:
    return exc_info.value.key
