"""Lazy package exports: a name is imported on first use, once; others are refused."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_a_name_imports_its_module_on_first_use_and_stays() -> None:
    code = (
        "import sys, slipstream.digests as d\n"
        "assert 'slipstream.digests.cache' not in sys.modules\n"
        "assert 'DigestCache' not in vars(d)\n"
        "cls = d.DigestCache\n"
        "assert 'slipstream.digests.cache' in sys.modules\n"
        "assert vars(d)['DigestCache'] is cls\n"
        "from slipstream.digests.cache import DigestCache\n"
        "assert cls is DigestCache\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_an_unknown_name_is_an_attribute_error() -> None:
    import slipstream.zip

    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        slipstream.zip.nothing  # noqa: B018
