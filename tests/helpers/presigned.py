"""Presigned URLs issued straight from a running server's app."""

from __future__ import annotations

import time
from typing import Any

from slipstream.server import App
from slipstream.server.routes.presigned import issue_url
from tests.helpers.server import Served


def app_of(served: Served) -> App:
    return served.server.app


def issue(served: Served, path: str, space: str = "root", **kwargs: Any) -> str:
    """A URL for ``path`` in ``space`` (15 minutes unless ``expires_in`` is given)."""
    app = app_of(served)
    kwargs.setdefault("expires_in", 900)
    with app.spaces[space].open(path) as opened:
        url, expires = issue_url(app, space, opened, **kwargs)
    assert abs(expires - (time.time() + kwargs["expires_in"])) < 5
    return url
