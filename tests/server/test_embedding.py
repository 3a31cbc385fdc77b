"""The server is embeddable: ``await nursery.start(slipstream.server.serve, config)``.

``test_readme_embedding_example_runs`` executes the README's example.  Contract for the
README: the first ```python block after a heading containing "Embedding" defines
``async def demo() -> bytes``, which starts a server inside its own nursery, downloads
a file from it and returns that file's bytes; the content is written in the block as a
bytes (or str) literal.  Running the block must not start anything at import time.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import httpx
import trio

import slipstream.server
from slipstream.server import Config, Limits

README = Path(__file__).resolve().parents[2] / "README.md"
HEADING = re.compile(r"^#{1,6}\s+.*embedding", re.IGNORECASE)
FENCE_OPEN = re.compile(r"^```python\s*$")


def embedding_example(text: str) -> str | None:
    """The first ```python block after the first heading mentioning "Embedding"."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if HEADING.match(line)), None)
    if start is None:
        return None
    for i in range(start + 1, len(lines)):
        if FENCE_OPEN.match(lines[i].strip()):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            return "\n".join(lines[i + 1 : end]) + "\n"
    return None


def literals(source: str) -> tuple[set[bytes], set[str]]:
    """The bytes and str constants written in ``source``."""
    found_bytes: set[bytes] = set()
    found_str: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bytes):
                found_bytes.add(node.value)
            elif isinstance(node.value, str):
                found_str.add(node.value)
    return found_bytes, found_str


def test_example_extraction_finds_the_first_block_under_the_heading() -> None:
    text = "# T\n```python\nno = 1\n```\n## Embedding it\ntext\n```python\nyes = 2\n```\n"
    assert embedding_example(text) == "yes = 2\n"
    assert embedding_example("# Nothing here\n```python\nx = 1\n```\n") is None


def test_readme_embedding_example_runs() -> None:
    assert README.is_file(), f"{README} is missing"
    source = embedding_example(README.read_text(encoding="utf-8"))
    assert source is not None, "README has no ```python block under an 'Embedding' heading"
    namespace: dict[str, Any] = {"__name__": "readme_embedding_example"}
    exec(compile(source, f"{README}:embedding", "exec"), namespace)
    demo = namespace.get("demo")
    assert callable(demo), "the README example must define async def demo()"

    async def bounded() -> Any:
        with trio.fail_after(30):
            return await demo()

    result = trio.run(bounded)
    assert isinstance(result, bytes) and result, f"demo() returned {result!r}"
    found_bytes, found_str = literals(source)
    text = result.decode("utf-8", "replace")
    assert result in found_bytes or text in found_str, (
        "demo() must return the bytes of the file it served, as written in the example"
    )


async def test_serve_in_a_nursery_returns_the_bound_port(tmp_path: Path) -> None:
    (tmp_path / "greeting.txt").write_bytes(b"hello, embedded world\n")
    config = Config(
        root=tmp_path,
        port=0,
        tokens=["embed-token"],
        access_log=False,
        limits=Limits(head_timeout=2, idle_timeout=2),
    )
    async with trio.open_nursery() as nursery:
        port = await nursery.start(slipstream.server.serve, config)
        assert isinstance(port, int) and 0 < port < 65536
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", verify=False) as client:
            health = await client.get("/healthz")
            file = await client.get(
                "/api/download",
                params={"filepath": "greeting.txt"},
                headers={"Authorization": "Bearer embed-token"},
            )
        nursery.cancel_scope.cancel()
    assert health.json() == {"status": "ok"}
    assert file.content == b"hello, embedded world\n"
    with trio.move_on_after(2):
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            return
        await stream.aclose()
    raise AssertionError("the server still accepts connections after its nursery was cancelled")


async def test_two_embedded_servers_side_by_side(tmp_path: Path) -> None:
    ports = []
    async with trio.open_nursery() as nursery:
        for name in ("a", "b"):
            root = tmp_path / name
            root.mkdir()
            (root / "who.txt").write_text(name)
            config = Config(root=root, port=0, tokens=[f"tok-{name}"], access_log=False)
            ports.append(await nursery.start(slipstream.server.serve, config))
        async with httpx.AsyncClient(verify=False) as client:
            for name, port in zip(("a", "b"), ports, strict=True):
                response = await client.get(
                    f"http://127.0.0.1:{port}/api/download",
                    params={"filepath": "who.txt", "token": f"tok-{name}"},
                )
                assert response.text == name
                other = "b" if name == "a" else "a"
                denied = await client.get(
                    f"http://127.0.0.1:{port}/api/download",
                    params={"filepath": "who.txt", "token": f"tok-{other}"},
                )
                assert denied.status_code == 401
        nursery.cancel_scope.cancel()
    assert ports[0] != ports[1]


def test_public_names() -> None:
    for name in ("serve", "Server", "Config", "Limits", "App"):
        assert hasattr(slipstream.server, name)
