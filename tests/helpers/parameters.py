"""What the parameter tests share: the table of every parameter of every route
(:data:`PARAMETERS`), the values each one gets, and the ``slipstream serve`` subprocess
they talk to (:func:`parameter_server`)."""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from tests.helpers.hostile_values import TRICKY_JSON, TRICKY_TEXT

TOKEN = "param-test-token"
EXAMPLES = 10
"""Hypothesis examples per parameter (the table has about fifty rows)."""
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SMALL = b"hello, parameters\n"


@dataclass(frozen=True)
class Param:
    """One parameter a route reads."""

    route: str
    """The route, as ``METHOD /path`` (``WS type N`` for websocket packets)."""
    name: str
    where: str
    """``query``, ``path`` (a path segment), ``json`` (body field) or ``ws`` (packet field)."""
    numeric: bool = False

    def __str__(self) -> str:
        return f"{self.route} {self.where}:{self.name}"


PARAMETERS: tuple[Param, ...] = (
    # seed 002
    Param("GET /api/download", "filepath", "query"),
    Param("GET /api/download", "fstype", "query"),
    Param("GET /api/download", "token", "query"),
    # local zips
    Param("GET /api/zip", "path", "query"),
    # presigned file route
    Param("GET /s/{space}/{path}", "expires", "query", numeric=True),
    Param("GET /s/{space}/{path}", "etag", "query"),
    Param("GET /s/{space}/{path}", "sig", "query"),
    Param("GET /s/{space}/{path}", "response-content-type", "query"),
    Param("GET /s/{space}/{path}", "response-content-disposition", "query"),
    # seed 001
    Param("GET /{directory}?download=", "directory", "path"),
    Param("GET /{directory}?download=", "download", "query"),
    Param("GET /{directory}?download=", "filename", "query"),
    Param("GET /{directory}?download=", "timeout", "query", numeric=True),
    Param("GET /{directory}?download=", "sha256", "query"),
    Param("GET /{directory}?downloads=", "directory", "path"),
    Param("GET /{directory}?downloads=", "downloads", "query"),
    Param("GET /{directory}?download_history=", "directory", "path"),
    Param("GET /{directory}?download_history=", "download_history", "query"),
    Param("GET /api/v1/downloads", "token", "query"),
    Param("DELETE /api/v1/downloads/{id}", "id", "path"),
    # seed 003
    Param("POST /v2/file/get_download_url", "drive_id", "json"),
    Param("POST /v2/file/get_download_url", "file_id", "json"),
    Param("POST /v2/file/get_download_url", "share_id", "json"),
    Param("POST /v2/file/get_download_url", "file_name", "json"),
    Param("POST /v2/file/get_download_url", "expire_sec", "json", numeric=True),
    Param("POST /v2/file/get_download_url", "response_content_type", "json"),
    Param("POST /v2/file/get", "drive_id", "json"),
    Param("POST /v2/file/get", "file_id", "json"),
    Param("POST /v2/file/get", "share_id", "json"),
    Param("POST /v2/file/list", "drive_id", "json"),
    Param("POST /v2/file/list", "parent_file_id", "json"),
    Param("POST /v2/file/list", "share_id", "json"),
    Param("POST /v2/file/list", "limit", "json", numeric=True),
    Param("POST /v2/file/list", "marker", "json"),
    # seed 004
    Param("POST /download", "fs_uri_list", "json"),
    Param("POST /download", "fs_file_name", "json"),
    Param("POST /download", "fs_request_id", "json"),
    Param("POST /download", "fs_forward_all_headers", "json"),
    Param("POST /download", "fs_response_format", "json"),
    Param("POST /download", "fs_error_redirect_uri", "json"),
    Param("POST /download", "fs_add_header-X-Extra", "json"),
    Param("GET /stream/{id}", "id", "path"),
    # seed 000 (after a successful Initialize, except for type 1's own fields)
    Param("WS packet", "type", "ws", numeric=True),
    Param("WS type 1", "id", "ws", numeric=True),
    Param("WS type 1", "token", "ws"),
    Param("WS type 1", "application", "ws"),
    Param("WS type 7", "id", "ws", numeric=True),
    Param("WS type 7", "filename", "ws"),
    Param("WS type 7", "resume_at", "ws", numeric=True),
    Param("WS type 20", "id", "ws", numeric=True),
)


def tricky_values(param: Param) -> list[Any]:
    """The values every parameter gets, besides hypothesis's."""
    return TRICKY_JSON if param.where in ("json", "ws") else TRICKY_TEXT


BANNER = re.compile(rb"at http://127\.0\.0\.1:([0-9]+)/")


@dataclass
class Server:
    """The module's ``slipstream serve`` subprocess."""

    port: int
    root: Path
    log: Path
    signed_path: str = ""
    signed_query: list[tuple[str, str]] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def build_root(base: Path) -> tuple[Path, Path]:
    root = base / "root"
    (root / "dir").mkdir(parents=True)
    (root / "small.txt").write_bytes(SMALL)
    (root / "dir" / "inner.txt").write_bytes(b"inner\n")
    (root / "résumé.txt").write_bytes(b"accents\n")
    (root / "empty.txt").write_bytes(b"")
    game = base / "game"
    game.mkdir()
    (game / "level.dat").write_bytes(b"level\n")
    return root, game


def wait_for_port(proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> int:
    """Read the server's stdout until it prints the URL it listens on."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while (match := BANNER.search(seen)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise AssertionError(f"no banner: {log.read_text(errors='replace')}")
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise AssertionError(f"server exited: {log.read_text(errors='replace')}")
            seen += chunk
    return int(match[1])


@contextmanager
def parameter_server(base: Path) -> Iterator[Server]:
    """``slipstream serve`` on a root built in ``base``, with a signed URL issued; on exit
    the server is stopped and its log checked for tracebacks."""
    root, game = build_root(base)
    log = base / "server.log"
    command = [sys.executable, "-m", "slipstream", "serve", "--root", str(root), "--port", "0"]
    command += ["--token", TOKEN, "--no-access-log", "--log-level", "warning"]
    command += ["--allow-download", "--allow-domain", "allowed.invalid"]
    command += ["--application", f"game={game}", "--ws-rate-limit", "0"]
    command += ["--zip-allow-prefix", "http://127.0.0.1:1/"]
    env = {k: v for k, v in os.environ.items() if k != "SLIPSTREAM_TOKEN"}
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=out, env=env)
    try:
        served = Server(wait_for_port(proc, log), root, log)
        body = {"file_id": "small.txt", "file_name": "résumé.txt"}
        body["response_content_type"] = "text/plain"
        issued = httpx.post(
            f"{served.base}/v2/file/get_download_url", json=body, headers=AUTH, trust_env=False
        )
        assert issued.status_code == 200, issued.text
        url = urlsplit(issued.json()["url"])
        served.signed_path = url.path
        served.signed_query = parse_qsl(url.query, keep_blank_values=True)
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "unexpected error" not in text, text
