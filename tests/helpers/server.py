"""A real slipstream server on a loopback port, over a tree of interesting files.

:func:`build_tree` makes a root full of interesting files (text, random binary, empty, a
directory, a non-ASCII name, a FIFO, symlinks escaping the root, a secret file outside
it); :func:`start_in` starts :class:`~slipstream.server.Server` over it in a nursery and
returns a :class:`Served`.  The ``start_server`` and ``served`` fixtures
(``tests/server/conftest.py``) are built on it.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import trio

from slipstream.server import App, Config, Limits, Server
from tests.helpers.raw_http import RawClient

TOKEN = "test-token"
SECRET = b"TOP-SECRET-outside-the-root-7c1f\n"
TEST_LIMITS = dict(
    head_timeout=1.0,
    idle_timeout=1.5,
    send_timeout=1.0,
    body_timeout=1.0,
    drain_timeout=2.0,
    max_connections=64,
)
NON_ASCII_NAME = "résumé 日本語 ü.txt"


def make_limits(**overrides: Any) -> Limits:
    """Short test limits (seconds, not minutes), with ``overrides`` applied."""
    return Limits(**{**TEST_LIMITS, **overrides})


@dataclass
class Served:
    """A running test server and the tree it serves."""

    server: Server
    port: int
    root: Path
    outside: Path
    """The directory holding ``root`` and ``secret.txt`` (never served)."""
    token: str
    files: dict[str, bytes] = field(default_factory=dict)
    """Relative path -> content of every regular file created under the root."""

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        """The ``Authorization`` header for the valid token."""
        return {"Authorization": f"Bearer {self.token}"}

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An httpx client pointed at this server (use as ``async with``).

        Plain HTTP only: ``verify=False`` skips building a TLS context (slow) per client.
        """
        return httpx.AsyncClient(base_url=self.base, timeout=10, verify=False, **kwargs)

    async def raw(self) -> RawClient:
        """A new raw connection to this server."""
        return await RawClient.connect(self.port)


def build_tree(base: Path) -> tuple[Path, dict[str, bytes]]:
    """Create ``base/root`` (served) and ``base/secret.txt`` (outside); return root, files."""
    root = base / "root"
    (root / "subdir" / "deeper").mkdir(parents=True)
    rng = random.Random(20240601)
    files: dict[str, bytes] = {
        "small.txt": b"hello, slipstream\n" * 20,
        "random.bin": rng.randbytes(3 * 1024 * 1024 + 12345),
        "medium.bin": rng.randbytes(70_001),
        "data.json": b'{"answer": 42}\n',
        "image.png": b"\x89PNG\r\n\x1a\n" + rng.randbytes(300),
        "noext": b"no extension here\n",
        "subdir/inner.txt": b"inside a subdirectory\n",
        "subdir/deeper/deep.txt": b"deep file\n",
        NON_ASCII_NAME: "ünïcödé content\n".encode(),
        'quo"te.txt': b"quoted name\n",
    }
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    (root / "empty.txt").write_bytes(b"")
    (base / "secret.txt").write_bytes(SECRET)
    (base / "secret-dir").mkdir()
    (base / "secret-dir" / "secret.txt").write_bytes(SECRET)
    (root / "escape.txt").symlink_to(base / "secret.txt")
    (root / "escape-rel.txt").symlink_to(Path("..") / "secret.txt")
    (root / "escape-dir").symlink_to(base / "secret-dir")
    (root / "inside-link.txt").symlink_to(root / "small.txt")
    unreadable = root / "unreadable.txt"
    unreadable.write_bytes(b"nobody may read this\n")
    unreadable.chmod(0)
    os.mkfifo(root / "fifo")
    return root, files


StartServer = Callable[..., Awaitable[Served]]


async def start_in(
    nursery: trio.Nursery,
    base: Path,
    *,
    limits: dict[str, Any] | None = None,
    app: App | None = None,
    **overrides: Any,
) -> Served:
    """Start a server in ``nursery`` over ``base/root`` (built by :func:`build_tree` if absent).

    ``limits`` are :class:`Limits` overrides; ``app`` is what the server plugs in;
    other keywords override :class:`Config` fields.
    """
    if (base / "root").exists():
        root = base / "root"
        files = {
            str(p.relative_to(root)): p.read_bytes()
            for p in root.rglob("*")
            if p.is_file()
            and not p.is_symlink()
            and os.access(p, os.R_OK)
            and p.stat().st_mode & 0o444
        }
    else:
        root, files = build_tree(base)
    options: dict[str, Any] = {
        "root": root,
        "port": 0,
        "tokens": [TOKEN],
        "access_log": False,
        "limits": make_limits(**(limits or {})),
    }
    options.update(overrides)
    config = Config(**options)
    server = Server(config, app)
    port = await nursery.start(server.run)
    return Served(server, port, root, base, TOKEN, files)


@asynccontextmanager
async def running_server(base: Path, **kwargs: Any) -> AsyncIterator[Served]:
    """A server in its own nursery, for tests that cannot use the ``nursery`` fixture
    (hypothesis re-runs fixtures per example).  Reuses ``base/root`` when it exists."""
    async with trio.open_nursery() as nursery:
        served = await start_in(nursery, base, **kwargs)
        try:
            yield served
        finally:
            nursery.cancel_scope.cancel()


def download_target(filepath: str, *, token: str | None = TOKEN, **extra: str) -> str:
    """``/api/download?filepath=...`` with ``filepath`` percent-encoded (and ``?token=``)."""
    query = f"filepath={quote(filepath, safe='')}"
    for key, value in extra.items():
        query += f"&{key}={quote(value, safe='')}"
    if token is not None:
        query += f"&token={quote(token, safe='')}"
    return f"/api/download?{query}"


async def wait_for(predicate: Callable[[], bool], *, timeout: float = 5.0) -> bool:
    """Poll ``predicate`` every 10 ms until it holds or ``timeout`` passes."""
    deadline = trio.current_time() + timeout
    while not predicate():
        if trio.current_time() >= deadline:
            return False
        await trio.sleep(0.01)
    return True
