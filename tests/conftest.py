"""Shared fixtures.  ``ext_twin`` runs a test against both twins of an ext module."""

from __future__ import annotations

from types import ModuleType

import pytest

from slipstream.ext import twin


@pytest.fixture(params=["py", "c"])
def twin_kind(request: pytest.FixtureRequest) -> str:
    """``"py"`` or ``"c"``; ext tests use it via ``load_twin``."""
    return str(request.param)


def load_twin(name: str, kind: str) -> ModuleType:
    """Import ``slipstream.ext._<name>_<kind>``; the compiled twin must exist (no skip)."""
    return twin(name, kind)
