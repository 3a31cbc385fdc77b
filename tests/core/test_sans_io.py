"""The sans-IO modules must not pull in trio (or any I/O framework)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SANS_IO_MODULES = [
    "slipstream.ranges",
    "slipstream.conditional",
    "slipstream.multipart",
    "slipstream.pathsafety",
    "slipstream.segments",
    "slipstream.errors",
    "slipstream.download",
    "slipstream.presign",
    "slipstream.netpolicy",
    "slipstream.filenames",
    "slipstream.zipplan",
    "slipstream.ziperrors",
    "slipstream.zipform",
    "slipstream.ziprange",
    "slipstream.zipstate",
    "slipstream.numeric",
]


@pytest.mark.parametrize("module", SANS_IO_MODULES)
def test_module_does_not_import_trio(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'trio', 'h11', 'httpx'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "", f"{module} imported {out.stdout.strip()}"


def test_server_depends_on_core_not_the_reverse() -> None:
    code = (
        "import sys, slipstream.ranges, slipstream.storage, slipstream.segments\n"
        "print(any(m.startswith('slipstream.server') for m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
