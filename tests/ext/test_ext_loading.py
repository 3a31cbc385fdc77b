"""The twin dispatcher in ``slipstream.ext`` loads what the environment asks for.

These tests run in both passes of ``make pytest`` (the environment selects the twin),
except the fresh-process probes, which set their own environment (marked ``twins``: they
run in the first pass only)."""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import os
import subprocess
import sys
from types import ModuleType

import pytest

import slipstream.ext as ext
from tests.helpers.twins import load_twin

PURE = os.environ.get("SLIPSTREAM_PURE", "") == "1"
REQUIRE_EXT = os.environ.get("SLIPSTREAM_REQUIRE_EXT", "") == "1" and not PURE


def is_compiled(module: ModuleType) -> bool:
    """True if ``module`` was loaded from a C extension file, not from Python source."""
    origin = getattr(module, "__file__", None) or ""
    return isinstance(module.__loader__, importlib.machinery.ExtensionFileLoader) and any(
        origin.endswith(suffix) for suffix in importlib.machinery.EXTENSION_SUFFIXES
    )


def compiled_twin_importable(name: str) -> bool:
    try:
        module = importlib.import_module(f"slipstream.ext._{name}_c")
    except ImportError:
        return False
    return is_compiled(module)


def test_segmap_is_dispatched() -> None:
    assert "segmap" in ext.IMPLEMENTATIONS
    assert set(ext.IMPLEMENTATIONS.values()) <= {"c", "python"}


def test_digest_dispatcher_exports_the_selected_twin() -> None:
    expected = "python" if ext.PURE else "c"
    if os.environ.get("SLIPSTREAM_REQUIRE_EXT") == "1" or ext.PURE:
        assert ext.IMPLEMENTATIONS["digest"] == expected
    kind = "py" if ext.IMPLEMENTATIONS["digest"] == "python" else "c"
    module = load_twin("digest", kind)
    assert ext.MultiDigest is module.MultiDigest
    assert ext.crc is module.crc
    assert ext.combine is module.combine
    assert ext.ALGORITHMS == module.ALGORITHMS
    assert ext.crc("crc64xz", b"123456789") == 0x995DC9BBDF1939FA  # its published check value


def test_zipfmt_package_exports_the_loaded_twin() -> None:
    kind = {"c": "c", "python": "py"}[ext.IMPLEMENTATIONS["zipfmt"]]
    assert ext.local_file_header is load_twin("zipfmt", kind).local_file_header
    if REQUIRE_EXT:
        assert ext.IMPLEMENTATIONS["zipfmt"] == "c"
    if PURE:
        assert ext.IMPLEMENTATIONS["zipfmt"] == "python"


@pytest.mark.parametrize(
    ("module", "name"),
    [("listing", "scan_directory"), ("httphead", "parse_request_head"), ("relay", "relay")],
)
def test_the_package_exports_the_loaded_twin(module: str, name: str) -> None:
    kind = {"c": "c", "python": "py"}[ext.IMPLEMENTATIONS[module]]
    assert getattr(ext, name) is getattr(load_twin(module, kind), name)
    if REQUIRE_EXT:
        assert kind == "c"
    if PURE:
        assert kind == "py"


def test_implementations_match_environment() -> None:
    """``SLIPSTREAM_REQUIRE_EXT=1``: all compiled; ``SLIPSTREAM_PURE=1``: all Python;
    neither: each module's twin is the one that can be imported."""
    assert ext.IMPLEMENTATIONS, "no module went through the dispatcher"
    segmap_c = importlib.import_module("slipstream.ext._segmap_c")
    segmap_py = importlib.import_module("slipstream.ext._segmap_py")
    if REQUIRE_EXT:
        assert set(ext.IMPLEMENTATIONS.values()) == {"c"}, ext.IMPLEMENTATIONS
        for name in ext.IMPLEMENTATIONS:
            assert is_compiled(ext.twin(name, "c")), name
        assert ext.SegmentMap is segmap_c.SegmentMap
        assert is_compiled(sys.modules[ext.SegmentMap.__module__])
    elif PURE:
        assert set(ext.IMPLEMENTATIONS.values()) == {"python"}, ext.IMPLEMENTATIONS
        assert ext.SegmentMap is segmap_py.SegmentMap
    else:
        for name, kind in ext.IMPLEMENTATIONS.items():
            assert kind == ("c" if compiled_twin_importable(name) else "python"), name
        chosen = segmap_c if ext.IMPLEMENTATIONS["segmap"] == "c" else segmap_py
        assert ext.SegmentMap is chosen.SegmentMap


PROBE = (
    "import json, slipstream.ext as e; "
    "print(json.dumps([e.IMPLEMENTATIONS, e.SegmentMap.__module__]))"
)


def run_probe(**env: str) -> subprocess.CompletedProcess[str]:
    """Import ``slipstream.ext`` in a fresh interpreter with ``env`` set."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLIPSTREAM_")}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", PROBE], env=environ, capture_output=True, text=True
    )


def probe(**env: str) -> tuple[dict[str, str], str]:
    done = run_probe(**env)
    assert done.returncode == 0, done.stderr
    implementations, module = json.loads(done.stdout)
    return implementations, module


@pytest.mark.twins
def test_pure_env_forces_python_in_a_fresh_process() -> None:
    implementations, module = probe(SLIPSTREAM_PURE="1", SLIPSTREAM_REQUIRE_EXT="1")
    assert implementations and set(implementations.values()) == {"python"}
    assert module == "slipstream.ext._segmap_py"


@pytest.mark.twins
def test_default_env_prefers_compiled_in_a_fresh_process() -> None:
    implementations, module = probe()
    for name, kind in implementations.items():
        assert kind == ("c" if compiled_twin_importable(name) else "python"), name
    expected = "c" if compiled_twin_importable("segmap") else "py"
    assert module == f"slipstream.ext._segmap_{expected}"


@pytest.mark.twins
def test_require_env_in_a_fresh_process() -> None:
    if compiled_twin_importable("segmap"):
        implementations, module = probe(SLIPSTREAM_REQUIRE_EXT="1")
        assert implementations["segmap"] == "c"
        assert module == "slipstream.ext._segmap_c"
    else:  # a missing compiled twin is an error, not a silent fallback
        done = run_probe(SLIPSTREAM_REQUIRE_EXT="1")
        assert done.returncode != 0
        assert "ImportError" in done.stderr or "ModuleNotFoundError" in done.stderr
