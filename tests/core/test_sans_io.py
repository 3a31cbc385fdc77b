"""The core's layering, checked on the installed package by walking it (no hand list of
sans-IO modules: a module added anywhere in the core is checked automatically).

* Sans-IO: every module of the core imports no I/O framework (trio, h11, httpx), except
  the modules and packages listed in :data:`IO_MODULES` / :data:`IO_PACKAGES`, the I/O
  edge of the core.  Nothing in :data:`ALWAYS_SANS_IO` may ever be listed there.
* Direction: the core never imports the server, and a flat leaf (``slipstream.x``)
  imports only leaves and the sans-IO ``slipstream.http``: never a feature package
  (``slipstream.zip``, ``slipstream.jobs``, ...).
"""

from __future__ import annotations

import functools
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import slipstream

FRAMEWORKS = ("trio", "h11", "httpx")
IO_MODULES = {
    "slipstream.background",
    "slipstream.digests.cache",
    "slipstream.digests.opened",
    "slipstream.fetch",
    "slipstream.fetched",
    "slipstream.send",
    "slipstream.upstream",
    "slipstream.upstream_pool",
    "slipstream.zip.ahead",
    "slipstream.zip.crc",
    "slipstream.zip.local",
    "slipstream.zip.localcrc",
    "slipstream.zip.remote",
    "slipstream.zip.sendthread",
    "slipstream.zip.service",
    "slipstream.zip.stream",
    "slipstream.zip.threadfetch",
    "slipstream.zip.threadio",
    "slipstream.zip.threadlane",
    "slipstream.zip.threadsend",
}
"""Modules that do I/O with Trio (or httpx) and so may import it."""
IO_PACKAGES = {"slipstream.client", "slipstream.jobs"}
"""Packages whose every module may import Trio."""
ALWAYS_SANS_IO = ("slipstream.http",)
"""Packages that are sans-IO by definition: never exempted, and leaves may import them."""
NOT_CORE = ("slipstream.server", "slipstream.ext", "slipstream.__main__")
"""Walked around: the server, the extension (its own tests) and the CLI entry point."""


def walk(package: str, paths: list[str]) -> Iterator[tuple[str, bool]]:
    """``(module name, is a package)`` for every module under ``package``, from the files."""
    for info in pkgutil.iter_modules(paths):
        name = f"{package}.{info.name}"
        if name.startswith(NOT_CORE):
            continue
        yield name, info.ispkg
        if info.ispkg:
            yield from walk(name, [str(Path(path) / info.name) for path in paths])


CORE = sorted(walk("slipstream", list(slipstream.__path__)))
CORE_MODULES = ["slipstream", *(name for name, _ in CORE)]
PACKAGES = sorted(name for name, is_package in CORE if is_package)
LEAVES = [name for name, is_package in CORE if not is_package and name.count(".") == 1]


def may_do_io(module: str) -> bool:
    """Whether ``module`` is on the I/O edge of the core."""
    return module in IO_MODULES or any(
        module == package or module.startswith(f"{package}.") for package in IO_PACKAGES
    )


@functools.cache
def imported_after(module: str) -> list[str]:
    """Every module in ``sys.modules`` after a fresh interpreter imports ``module``."""
    code = f"import sys, {module}\nprint('\\n'.join(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return out.stdout.split()


def test_the_walk_finds_the_core() -> None:
    assert "slipstream.http.ranges" in CORE_MODULES
    assert "slipstream.storage" in LEAVES
    assert "slipstream.http" in PACKAGES
    for exempt in IO_MODULES | IO_PACKAGES:
        assert exempt in CORE_MODULES, f"{exempt} is exempted but does not exist"
        assert not exempt.startswith(ALWAYS_SANS_IO), f"{exempt} must stay sans-IO"


@pytest.mark.parametrize("module", [m for m in CORE_MODULES if not may_do_io(m)])
def test_module_does_not_import_an_io_framework(module: str) -> None:
    loaded = imported_after(module)
    bad = sorted(m for m in loaded if m.split(".")[0] in FRAMEWORKS and "." not in m)
    assert bad == [], f"{module} imported {bad}"


@pytest.mark.parametrize("module", LEAVES)
def test_a_leaf_imports_no_feature_package_and_not_the_server(module: str) -> None:
    allowed = set(LEAVES) | {"slipstream", *ALWAYS_SANS_IO}
    loaded = imported_after(module)
    ours = [m for m in loaded if m.split(".")[0] == "slipstream" and not m.startswith(NOT_CORE)]
    bad = sorted(m for m in ours if m not in allowed and not m.startswith(ALWAYS_SANS_IO))
    assert bad == [], f"{module} imported {bad}"


def test_server_depends_on_core_not_the_reverse() -> None:
    loaded = imported_after("slipstream.storage, slipstream.segments, slipstream.http.ranges")
    assert not [m for m in loaded if m.startswith("slipstream.server")]
