"""Lazy package exports (PEP 562): a package names what it exports and the module each
name lives in, and imports that module on first use.

A package whose I/O modules import Trio uses this so that importing one of its sans-IO
modules (which imports the package first) does not import Trio with it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, sources: Mapping[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``: ``sources`` maps each exported name to
    the submodule (relative, without the dot) that defines it.  A name is imported once,
    then kept in the package's namespace."""

    def __getattr__(name: str) -> Any:
        module = sources.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
