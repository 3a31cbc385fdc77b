"""``GET /healthz``: liveness for load balancers and the test harness."""

from __future__ import annotations

from ..errors import error_response
from ..http import Request, Response, json_response
from ..router import Router


def register(router: Router) -> None:
    """Add the health route."""

    async def healthz(request: Request) -> Response:
        return json_response(200, {"status": "ok"})

    router.group(error_response).add("/healthz", healthz)
