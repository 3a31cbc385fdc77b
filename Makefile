# The two commands: `make run` and `make test`.  Everything else is a helper of theirs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
HOST   ?= 127.0.0.1
PORT   ?= 8000
ROOT   ?= ./data
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Reinstall (and rebuild the extension) when the build inputs or the set of files change
# (the strict editable install links each file: a new module needs a new link).  One level
# of subpackages: core/http, core/zip, core/jobs, core/client, core/digests, server/routes.
BUILD_INPUTS := pyproject.toml setup.py $(wildcard ext/*.pyx ext/*.pxi ext/csrc/*) \
                $(wildcard core/*.py core/*/*.py ext/*.py server/*.py server/*/*.py server/web/*)

.PHONY: run test lint typecheck pytest bench system-deps bench-deps install clean

run: .stamp-install
	$(PY) -m slipstream serve --root $(ROOT) --host $(HOST) --port $(PORT)

test: .stamp-test-install system-deps
	$(MAKE) --no-print-directory lint typecheck pytest

lint: .stamp-test-install
	$(VENV)/bin/ruff check core ext server tests bench
	$(VENV)/bin/ruff format --check core ext server tests bench

typecheck: .stamp-test-install
	$(VENV)/bin/mypy -p slipstream

# Twice: every test on the compiled twins, then the server and the core again on the pure
# ones.  Tests marked `twins` load each twin by name whatever the environment selected, so
# the second pass leaves them out (see the README, "The compiled extension and its twins").
# Two pytest-xdist workers: most tests wait on sockets, timeouts and subprocesses, and
# every test has its own port (bound at 0), temporary directory and server.
PYTEST := $(VENV)/bin/pytest -q -p no:cacheprovider -n 2
# The browser tests run last, in a process of their own: the session's chromium and its
# driver open and close descriptors in the background, which the fd-leak tests count.
pytest: .stamp-test-install
	SLIPSTREAM_REQUIRE_EXT=1 $(PYTEST) -m "not browser"
	SLIPSTREAM_PURE=1 $(PYTEST) -m "not twins and not browser"
	SLIPSTREAM_REQUIRE_EXT=1 $(VENV)/bin/pytest -q -p no:cacheprovider -m browser tests/web

bench: .stamp-bench-install bench-deps
	$(PY) bench/run_all.py

install: .stamp-install

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel cython

# Editable install in strict mode (a link tree mypy can follow); --no-build-isolation
# reuses the venv's Cython so a rebuild takes seconds.
.stamp-install: $(VENV)/bin/python $(BUILD_INPUTS)
	flock .venv/.install.lock $(PIP) install -q --no-build-isolation -e . --config-settings editable_mode=strict
	@touch $@

.stamp-test-install: $(VENV)/bin/python $(BUILD_INPUTS)
	flock .venv/.install.lock $(PIP) install -q --no-build-isolation -e '.[test]' --config-settings editable_mode=strict
	@touch $@ .stamp-install

.stamp-bench-install: $(VENV)/bin/python $(BUILD_INPUTS)
	flock .venv/.install.lock $(PIP) install -q --no-build-isolation -e '.[test,bench]' --config-settings editable_mode=strict
	@touch $@ .stamp-install .stamp-test-install

# Real tools the tests drive as a user would (zip readers, and Debian's chromium, which
# the web page's tests drive through Playwright: never a browser Playwright downloads).
# Installed by the project, never by hand: `make system-deps` installs the Debian packages
# of the missing ones (and is a quick no-op when all are there); `make test` runs it first.
TEST_TOOLS := unzip 7z bsdtar chromium
system-deps:
	@missing=""; for t in $(TEST_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq unzip p7zip-full libarchive-tools chromium; \
	fi

# The anchors `make bench` measures against, the same way.
BENCH_TOOLS := nginx wrk aria2c curl openssl
bench-deps:
	@missing=""; for t in $(BENCH_TOOLS); do PATH="$$PATH:/usr/sbin:/sbin" command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nginx-light wrk aria2 curl openssl; \
	fi

clean:
	rm -rf build dist *.egg-info .stamp-* ext/_*_c.c ext/*.so .mypy_cache .ruff_cache
