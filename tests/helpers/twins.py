"""Loading one twin of a compiled extension module for the ext tests."""

from __future__ import annotations

from types import ModuleType

from slipstream.ext import twin


def load_twin(name: str, kind: str) -> ModuleType:
    """Import ``slipstream.ext._<name>_<kind>``; the compiled twin must exist (no skip)."""
    return twin(name, kind)
