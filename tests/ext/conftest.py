"""Fixtures for the twin tests."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.helpers.twins import load_twin


@pytest.fixture
def zf(twin_kind: str) -> ModuleType:
    """The ``zipfmt`` twin of this parametrisation (compiled or pure), loaded by name."""
    return load_twin("zipfmt", twin_kind)
