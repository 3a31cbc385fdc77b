"""Fixtures of the web page's tests: one chromium for the whole session, and the
server suite's ``served`` / ``start_server`` / ``env`` (a real server on loopback)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.browser import BrowserThread
from tests.server.conftest import env, make_env, served, start_server

__all__ = ["browser_thread", "env", "make_env", "served", "start_server"]


@pytest.fixture(scope="session")
def browser_thread() -> Iterator[BrowserThread]:
    """Debian's chromium in a thread of its own (see :mod:`tests.helpers.browser`)."""
    thread = BrowserThread()
    thread.start()
    try:
        yield thread
    finally:
        thread.close()
