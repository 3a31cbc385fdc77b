"""Route modules get the services they use at registration; none imports the module
that builds them (``slipstream.server.services``) or the server (``slipstream.server.app``),
so there is no import cycle between the routes and the application, not even for types."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import pytest

import slipstream.server
import slipstream.server.routes

FORBIDDEN = {"slipstream.server.app", "slipstream.server.services"}
SERVER = Path(slipstream.server.__file__).parent
ROUTE_USERS = ["file_reply", "ws", "ws_hub", "router", "errors", "connection"]
"""Server modules the routes (or the hub) import: they must not import the app either."""


def imported(module: str, source: str) -> set[str]:
    """Every module ``source`` (of ``module``) imports: relative imports resolved, those
    under ``if TYPE_CHECKING:`` included, ``from X import name`` counted as ``X.name``."""
    package = module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def route_modules() -> list[tuple[str, Path]]:
    routes = Path(slipstream.server.routes.__file__).parent
    found = [
        (f"slipstream.server.routes.{info.name}", routes / f"{info.name}.py")
        for info in pkgutil.iter_modules([str(routes)])
    ]
    found += [(f"slipstream.server.{name}", SERVER / f"{name}.py") for name in ROUTE_USERS]
    return found


def test_the_scan_sees_relative_and_type_checking_imports() -> None:
    module = "slipstream.server.routes.example"
    guarded = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..app import App\n"
    assert "slipstream.server.app" in imported(module, guarded)
    assert "slipstream.server.app" in imported(module, "from .. import app\n")
    assert "slipstream.server.services" in imported(module, "import slipstream.server.services\n")
    assert not imported(module, "from ..router import Router\n") & FORBIDDEN


@pytest.mark.parametrize(
    ("module", "path"), route_modules(), ids=[module for module, _ in route_modules()]
)
def test_no_route_module_imports_the_app(module: str, path: Path) -> None:
    assert path.is_file(), path
    assert not imported(module, path.read_text(encoding="utf-8")) & FORBIDDEN
