"""``slipstream`` flags: help for every flag with its default, ``--version``, bad values
refused in one line with status 2, bind failures in one line with status 1, and the
wildcard-address rule for ``--public-url``."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import httpx
import pytest

import slipstream
from slipstream.server import cli
from slipstream.server.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def never_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process ``main()`` must refuse before serving: a server started here would
    run until killed, so starting one fails the test instead."""

    async def refuse(config: object) -> None:
        raise AssertionError("the server started")

    monkeypatch.setattr(cli, "run_server", refuse)


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``main(argv)`` in-process: (exit status, stdout, stderr)."""
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse exits for --help, --version and bad flags
        status = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return status, out, err


def subparsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """The top-level parser and every subcommand's parser."""
    yield "slipstream", parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def shown_default(action: argparse.Action) -> str | None:
    """The default an option's help must show (None: nothing worth showing)."""
    default = action.default
    if not action.option_strings or default is None or default is False:
        return None
    if default == argparse.SUPPRESS:
        return None
    if isinstance(default, list) and not default:
        return None
    return str(default)


def option_entries(text: str) -> dict[str, str]:
    """Each option's entry of a help text (its lines joined), by every flag it names."""
    entries: dict[str, str] = {}
    current: list[str] = []
    for line in [*text.splitlines(), ""]:
        if re.match(r"  -", line) or not line.strip():
            if current:
                flags = re.findall(r"(?:^|, )(--?[\w-]+)", current[0].strip().split("  ")[0])
                for flag in flags:
                    entries[flag] = " ".join(" ".join(current).split())
            current = [line] if line.strip() else []
        elif current:
            current.append(line)
    return entries


def test_every_flag_of_every_command_has_help_and_shows_its_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "2000")  # one line per option, so defaults are not wrapped
    checked = 0
    for name, parser in subparsers(build_parser()):
        text = parser.format_help()
        for action in parser._actions:
            label = action.option_strings or [action.dest]
            assert action.help and action.help.strip(), f"{name} {label} has no help"
            assert action.help != argparse.SUPPRESS, f"{name} {label} is hidden"
            default = shown_default(action)
            if default is None:
                continue
            flag = action.option_strings[-1]
            entry = option_entries(text).get(flag, "")
            assert f"(default: {default})" in entry, f"{name} {flag}: {entry!r}"
            checked += 1
    assert checked >= 15  # serve's numbers, addresses and limits, get's timeout


def test_top_level_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_main(["--help"], capsys)
    assert status == 0
    assert "``" not in out and ":class:" not in out
    for command in ("serve", "get", "digest"):
        assert re.search(rf"^\s+{command}\s+\S", out, re.MULTILINE), out


def test_help_cites_no_spec_document() -> None:
    parser = build_parser()
    for name, command in [("slipstream", parser), *subparsers(parser)]:
        text = command.format_help()
        found = re.findall(r"\bseeds?\b.{0,10}|\bissue \d+", text, re.IGNORECASE)
        assert not found, f"{name} --help: {found}"


def test_version_comes_from_the_installed_distribution() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "slipstream", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0
    assert done.stdout == f"slipstream {metadata.version('slipstream')}\n"
    assert metadata.version("slipstream") == slipstream.__version__  # the one source


BAD_FLAGS = [
    (["--port", "70000"], "--port"),
    (["--port", "-1"], "--port"),
    (["--port", "eighty"], "--port"),
    (["--port", "٨٠"], "--port"),
    (["--max-download-size", "-1"], "--max-download-size"),
    (["--content-digest-max", "-1"], "--content-digest-max"),
    (["--max-fetch-size", "-5"], "--max-fetch-size"),
    (["--history-limit", "-1"], "--history-limit"),
    (["--max-concurrent-downloads", "0"], "--max-concurrent-downloads"),
    (["--ws-rate-limit", "-1"], "--ws-rate-limit"),
    (["--ws-rate-window", "0"], "--ws-rate-window"),
    (["--ws-block-seconds", "-1"], "--ws-block-seconds"),
    (["--download-timeout", "0"], "--download-timeout"),
    (["--download-timeout", "-3"], "--download-timeout"),
    (["--download-timeout", "nan"], "--download-timeout"),
    (["--zip-ttl", "inf"], "--zip-ttl"),
    (["--public-url", "files.example.com"], "--public-url"),
    (["--public-url", "/relative"], "--public-url"),
    (["--public-url", "ftp://files.example.com"], "--public-url"),
    (["--public-url", "http://"], "--public-url"),
    (["--public-url", "https://files.example.com/?a=b"], "--public-url"),
    (["--public-url", "http://user:pw@files.example.com"], "--public-url"),
    (["--public-url", "http://files.example.com:99999"], "--public-url"),
    (["--internal-url", "internal"], "--internal-url"),
    (["--cdn-url", "javascript:alert(1)"], "--cdn-url"),
    (["--token", ""], "--token"),
    (["--host", "0.0.0.0"], "--public-url"),
    (["--host", "::"], "--public-url"),
    (["--host", "0"], "--public-url"),
    (["--host", ""], "--public-url"),
]


@pytest.mark.parametrize(("flags", "named"), BAD_FLAGS)
def test_a_bad_flag_is_one_line_and_status_2_before_anything_is_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], named: str
) -> None:
    root = tmp_path / "root"
    status, out, err = run_main(["serve", "--root", str(root), "--port", "0", *flags], capsys)
    assert status == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("slipstream serve: ")
    assert named in lines[0]
    assert not root.exists()


def test_a_root_that_is_a_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_bytes(b"x")
    for flag in ("--root", "--state-dir"):
        argv = ["serve", "--root", str(tmp_path), "--port", "0", flag, str(tmp_path / "file")]
        status, _, err = run_main(argv, capsys)
        assert status == 2
        name = flag[2:].replace("-", " ")
        assert err == f"slipstream serve: {name} {tmp_path / 'file'} is not a directory\n"


def test_a_wildcard_host_with_a_public_url_starts_and_issues_urls_under_it(
    tmp_path: Path,
) -> None:
    from tests.helpers.subprocess_server import CliServer

    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(b"abc\n")
    public = "https://files.example.com/base"
    with CliServer(root, "--host", "0.0.0.0", "--public-url", public, "--token", "t") as server:
        assert server.host == "0.0.0.0"
        assert f"(public URL {public})" in server.text
        with httpx_client(server.port) as client:
            reply = client.post(
                "/v2/file/get_download_url",
                json={"drive_id": "1", "file_id": "a.txt"},
                headers={"Authorization": "Bearer t"},
            )
        assert reply.status_code == 200, reply.text
        assert reply.json()["url"].startswith(f"{public}/s/drive-1/a.txt?")
        assert server.stop() == 0


def httpx_client(port: int) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)


# --- failures to listen ------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another socket is listening on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def serve_subprocess(
    root: Path, *flags: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SLIPSTREAM_TOKEN"}
    return subprocess.run(
        [sys.executable, "-m", "slipstream", "serve", "--root", str(root), *flags],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=cwd,
    )


def test_a_busy_port_is_one_line_and_status_1(tmp_path: Path, busy_port: int) -> None:
    done = serve_subprocess(tmp_path / "root", "--port", str(busy_port))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"slipstream serve: cannot listen on 127.0.0.1:{busy_port}: Address already in use\n"
    )


@pytest.mark.parametrize("host", ["999.1.1.1", "no-such-host.invalid", "192.0.2.1"])
def test_a_host_that_cannot_be_listened_on_is_one_line_and_status_1(
    tmp_path: Path, host: str
) -> None:
    done = serve_subprocess(tmp_path / "root", "--port", "0", "--host", host)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"slipstream serve: cannot listen on {host}:0: ")


def make_run_copy(tmp_path: Path) -> Path:
    """A directory holding the Makefile and a link to this venv, as a fresh clone would
    after ``make install``: ``make run`` there serves its own ``./data``."""
    copy = tmp_path / "clone"
    copy.mkdir()
    shutil.copy(REPO / "Makefile", copy / "Makefile")
    (copy / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return copy


def test_make_run_on_a_busy_port_is_one_line(tmp_path: Path, busy_port: int) -> None:
    copy = make_run_copy(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("SLIPSTREAM_TOKEN", "MAKEFLAGS")}
    done = subprocess.run(
        ["make", "--no-print-directory", "-o", ".stamp-install", "run", f"PORT={busy_port}"],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "ExceptionGroup" not in done.stderr
    ours = [line for line in done.stderr.splitlines() if not line.startswith("make")]
    assert ours == [
        f"slipstream serve: cannot listen on 127.0.0.1:{busy_port}: Address already in use"
    ]
