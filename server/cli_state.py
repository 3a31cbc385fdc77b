"""``slipstream state``: check the stores of a state dir, and set a damaged one aside.

``slipstream state check`` examines every store (``PRAGMA integrity_check`` and the schema
version of each SQLite file, the token and the secret) and exits 1 when one is damaged.
``slipstream state quarantine NAME`` moves a damaged store aside (``NAME.corrupt-<UTC>``)
so the next start begins with an empty one: for a record store (download jobs, zip
manifests, the token, the secret) the server never does that by itself.  Stop the server
first; neither command starts one or changes a healthy store.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from typing import TypeVar

from slipstream.statefiles import (
    SECRET_FILES,
    Kind,
    Schema,
    examine,
    examine_secret,
    set_aside,
)

__all__ = ["STORE_NAMES", "add_state_parser", "state_command", "stores"]

P = TypeVar("P", bound=argparse.ArgumentParser)


def stores() -> tuple[Schema, ...]:
    """The SQLite stores of a server's state dir (their ``name`` is the file name).

    Imported when asked for: the packages that define them import Trio, which
    ``slipstream --help`` and ``slipstream digest`` have no use for.
    """
    from slipstream.digests.store import SCHEMA as DIGESTS
    from slipstream.jobs.store import SCHEMA as DOWNLOADS
    from slipstream.zip.state import CRC_SCHEMA as ZIP_CRCS
    from slipstream.zip.state import SCHEMA as ZIP_MANIFESTS

    return (DOWNLOADS, ZIP_MANIFESTS, ZIP_CRCS, DIGESTS)


def add_state_parser(
    commands: argparse._SubParsersAction[P], formatter: type[argparse.HelpFormatter]
) -> None:
    """The ``state`` subcommand and its ``check`` and ``quarantine`` actions."""
    state = commands.add_parser(
        "state",
        help="check the server's state dir, or set a damaged store aside",
        description="Check the stores of a state dir, or move a damaged one aside.",
        formatter_class=formatter,
    )
    actions = state.add_subparsers(
        dest="action", required=True, metavar="ACTION", help="check or quarantine"
    )
    check = actions.add_parser(
        "check",
        help="report the integrity of every store (exit 1 if any is damaged)",
        description="Run PRAGMA integrity_check on every store and read its schema version.",
        formatter_class=formatter,
    )
    quarantine = actions.add_parser(
        "quarantine",
        help="move a damaged store aside; the next start makes an empty one",
        description="Move a damaged store aside (NAME.corrupt-<UTC time>). Stop the server first.",
        formatter_class=formatter,
    )
    quarantine.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help=f"store to move: {', '.join(_names())}",
    )
    quarantine.add_argument(
        "--force", action="store_true", help="move it aside even if it is not damaged"
    )
    for parser in (check, quarantine):
        parser.add_argument(
            "--root", type=Path, default=Path("data"), metavar="DIR", help="the served directory"
        )
        parser.add_argument(
            "--state-dir",
            type=Path,
            default=None,
            metavar="DIR",
            help="the state dir (default: ROOT/.slipstream)",
        )


def state_command(args: argparse.Namespace) -> int:
    """Run ``slipstream state ACTION``; its exit status."""
    state_dir: Path = (args.state_dir or args.root / ".slipstream").expanduser()
    if not state_dir.is_dir():
        print(f"slipstream state: no state dir at {state_dir}", file=sys.stderr)
        return 1
    if args.action == "check":
        return check(state_dir)
    return quarantine(state_dir, args.names, force=args.force)


def check(state_dir: Path) -> int:
    """Print one line per store; 1 when any is damaged."""
    damaged = 0
    for schema in stores():
        try:
            health = examine(state_dir / schema.name, schema, full=True)
        except sqlite3.Error as exc:  # busy: another process holds a lock on it
            damaged += 1
            print(f"{schema.name:<18} {schema.kind.value:<7} NOT CHECKED: {exc}")
            continue
        if not health.exists:
            verdict = "missing (made empty at the next start)"
        elif health.problem is not None:
            damaged += 1
            then = "set aside at the next start" if schema.kind is Kind.CACHE else "start refused"
            verdict = f"DAMAGED: {health.problem} ({then})"
        elif health.version is not None and health.version < schema.version:
            verdict = (
                f"ok, schema {health.version} (migrated to {schema.version} at the next start)"
            )
        else:
            verdict = f"ok, schema {health.version}"
        print(f"{schema.name:<18} {schema.kind.value:<7} {verdict}")
    for name in SECRET_FILES:
        value, problem = examine_secret(state_dir / name)
        if problem is not None:
            damaged += 1
            verdict = f"DAMAGED: {problem} (start refused)"
        else:
            verdict = "ok" if value is not None else "missing (made at the next start)"
        print(f"{name:<18} {'record':<7} {verdict}")
    for aside in sorted(state_dir.glob("*.corrupt-*")):
        print(f"{aside.name:<18} set aside earlier (delete it once you no longer need it)")
    if damaged:
        print(
            f"{damaged} damaged or not checked: `slipstream state quarantine NAME` moves a "
            "damaged one aside",
            file=sys.stderr,
        )
    return 1 if damaged else 0


def quarantine(state_dir: Path, names: list[str], *, force: bool) -> int:
    """Move each named store aside (only a damaged one unless ``force``); 1 on any refusal."""
    status = 0
    for given in names:
        name = _file_name(given)
        if name is None:
            print(
                f"slipstream state: no store named {given!r} ({', '.join(_names())})",
                file=sys.stderr,
            )
            status = 1
            continue
        path = state_dir / name
        if not path.exists() and not path.is_symlink():
            print(f"slipstream state: {path} does not exist; nothing to move", file=sys.stderr)
            status = 1
            continue
        try:
            problem = _problem(path, name)
        except sqlite3.Error as exc:  # busy: another process holds a lock on it
            print(f"slipstream state: {path} could not be checked: {exc}", file=sys.stderr)
            status = 1
            continue
        if problem is None and not force:
            print(
                f"slipstream state: {path} is not damaged; add --force to move it aside anyway",
                file=sys.stderr,
            )
            status = 1
            continue
        aside = set_aside(path)
        print(f"moved {path} aside to {aside.name}; the next start begins with an empty one")
    return status


STORE_NAMES = ("downloads", "zip", "zip-crc", "digests", *SECRET_FILES)
"""What ``quarantine`` accepts (a test checks it against :func:`stores`); spelled out so
that building the parser imports none of the stores."""


def _names() -> list[str]:
    return list(STORE_NAMES)


def _file_name(given: str) -> str | None:
    """The file name of the store ``given`` names (with or without ``.sqlite3``)."""
    for schema in stores():
        if given in (schema.name, schema.name.removesuffix(".sqlite3")):
            return schema.name
    return given if given in SECRET_FILES else None


def _problem(path: Path, name: str) -> str | None:
    for schema in stores():
        if schema.name == name:
            return examine(path, schema, full=True).problem
    return examine_secret(path)[1]
