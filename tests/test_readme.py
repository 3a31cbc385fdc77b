"""The README's quick start works pasted verbatim after ``make run`` on a fresh clone.

The block after the ``quick start`` marker is run line by line with bash against a
server started by the Makefile's own ``run`` target, in a temporary directory that
holds a copy of the Makefile, a link to this virtualenv (where a fresh clone has the
one ``make run`` just built) and its own ``./data``.  The one liberty taken: the server
listens on a free port (``PORT=0``) and the block's ``127.0.0.1:8000`` is rewritten to
it, so the test neither needs nor disturbs port 8000.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MARKER = "<!-- quick start:"
BANNER = re.compile(rb"at http://127\.0\.0\.1:(\d+)/")
HELLO = b"hello from slipstream\n"


def quick_start_commands() -> list[str]:
    """The lines of the fenced block right after the quick-start marker."""
    text = (REPO / "README.md").read_text()
    start = text.index(MARKER)
    block = re.search(r"^```[a-z]*\n(.*?)^```$", text[start:], re.MULTILINE | re.DOTALL)
    assert block is not None, "no fenced block after the quick-start marker"
    return [line for line in block[1].splitlines() if line.strip()]


@dataclass
class MakeRun:
    """``make run`` in a clone-like directory; ``port`` is where it listens."""

    directory: Path
    process: subprocess.Popen[bytes]
    port: int
    output: bytes


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[MakeRun]:
    clone = tmp_path / "clone"
    clone.mkdir()
    shutil.copy(REPO / "Makefile", clone / "Makefile")
    (clone / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in ("SLIPSTREAM_TOKEN", "MAKEFLAGS")}
    # -o .stamp-install: the install is this virtualenv; make must not try to redo it.
    process = subprocess.Popen(
        ["make", "--no-print-directory", "-o", ".stamp-install", "run", "PORT=0"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # make and the server it starts: one group to stop
    )
    try:
        output = read_until_banner(process)
        match = BANNER.search(output)
        assert match is not None
        yield MakeRun(clone, process, int(match[1]), output)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        assert process.stdout is not None
        process.stdout.close()


def read_until_banner(process: subprocess.Popen[bytes]) -> bytes:
    assert process.stdout is not None
    output = b""
    deadline = time.monotonic() + 60
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not (BANNER.search(output) and b"access token: " in output):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"make run printed no banner: {output!r}"
            if selector.select(remaining):
                chunk = os.read(process.stdout.fileno(), 4096)
                assert chunk, f"make run exited: {output!r}"
                output += chunk
    return output


def run_block(commands: list[str], cwd: Path) -> list[tuple[int, bytes]]:
    """Run ``commands`` in one bash (variables carry over, as in a terminal); return
    each command's exit status and output."""
    marker = "@@status@@"
    script = "".join(f"{command}\nprintf '\\n{marker} %d\\n' $?\n" for command in commands)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        capture_output=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "SLIPSTREAM_TOKEN"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == b"", done.stderr  # curl -sS and the client stay quiet on success
    results = []
    parts = re.split(rb"\n" + marker.encode() + rb" (\d+)\n", done.stdout)
    for index in range(0, len(parts) - 1, 2):
        results.append((int(parts[index + 1]), parts[index]))
    assert len(results) == len(commands), done.stdout
    return results


def test_the_quick_start_block_works_verbatim_after_make_run(make_run: MakeRun) -> None:
    commands = quick_start_commands()
    assert any("8000" in command for command in commands)
    local = [
        command.replace("127.0.0.1:8000", f"127.0.0.1:{make_run.port}") for command in commands
    ]
    results = run_block(local, make_run.directory)
    for command, (status, _) in zip(commands, results, strict=True):
        assert status == 0, command

    data = make_run.directory / "data"
    token = (data / ".slipstream" / "token").read_text().strip()
    assert f"access token: {token}".encode() in make_run.output
    outputs = [output for _, output in results]
    assert outputs[:2] == [b"", b""]  # TOKEN=..., echo > data/hello.txt
    assert (data / "hello.txt").read_bytes() == HELLO
    assert outputs[2] == HELLO
    assert outputs[3] == HELLO[6:]
    head = outputs[4].decode().lower()
    assert head.startswith("http/1.1 200 ")
    assert f"content-length: {len(HELLO)}\r\n" in head
    assert 'content-disposition: attachment; filename="hello.txt"' in head
    assert (
        outputs[5] == f"saved data/hello-copy.txt ({len(HELLO)} bytes, SHA-256 verified)\n".encode()
    )
    assert (data / "hello-copy.txt").read_bytes() == HELLO
    assert len(commands) == 6  # a new line in the block needs its check here
