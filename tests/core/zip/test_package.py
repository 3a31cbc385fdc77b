"""``slipstream.zip`` exports its public API lazily (importing it does not import Trio)."""

from __future__ import annotations

import importlib

import pytest

import slipstream.zip


@pytest.mark.parametrize("name", slipstream.zip.__all__)
def test_every_export_is_the_object_of_its_module(name: str) -> None:
    exported = getattr(slipstream.zip, name)
    module = importlib.import_module(exported.__module__)
    assert module.__name__.startswith("slipstream.zip.")
    assert getattr(module, name) is exported


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        slipstream.zip.nothing  # noqa: B018
