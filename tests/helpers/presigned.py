"""Presigned URLs issued straight from a running server's URL issuer."""

from __future__ import annotations

import time
from typing import Any

from slipstream.server.routes.presigned import UrlIssuer
from tests.helpers.server import Served


def urls_of(served: Served) -> UrlIssuer:
    return served.server.services.urls


def issue(served: Served, path: str, space: str = "root", **kwargs: Any) -> str:
    """A URL for ``path`` in ``space`` (15 minutes unless ``expires_in`` is given)."""
    urls = urls_of(served)
    kwargs.setdefault("expires_in", 900)
    with urls.spaces[space].open(path) as opened:
        url, expires = urls.issue(space, opened, **kwargs)
    assert abs(expires - (time.time() + kwargs["expires_in"])) < 5
    return url
