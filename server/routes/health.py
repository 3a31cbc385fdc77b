"""``GET /healthz``: liveness for load balancers and the test harness."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..http import Request, Response, json_response
from ..router import Router

if TYPE_CHECKING:
    from ..app import App


def register(router: Router, app: App) -> None:
    """Add the health route."""

    async def healthz(request: Request) -> Response:
        return json_response(200, {"status": "ok"})

    router.add("/healthz", healthz)
