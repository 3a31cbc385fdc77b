"""``GET /metrics``: the Prometheus text exposition of the server's :class:`Metrics`.

On the main port it needs the API's Bearer token (the port faces clients); on the
separate ``--metrics-bind`` listener it is token-free (that address is meant for the
operators' network, as node_exporter's is).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..auth import require_token
from ..errors import error_response
from ..http import Request, Response
from ..metrics import Metrics
from ..router import Router

METRICS_PATH = "/metrics"


def register(router: Router, *, metrics: Metrics, tokens: Sequence[str] | None) -> None:
    """Add ``/metrics``; ``tokens`` None: no token is asked (the separate listener).

    ``tokens`` is read per request (the configured list)."""

    async def scrape(request: Request) -> Response:
        if tokens is not None:
            require_token(request, tokens)
        body, content_type = metrics.exposition(request.headers.get("accept"))
        return Response(200, [("Content-Type", content_type), ("Cache-Control", "no-store")], body)

    router.group(error_response).add(METRICS_PATH, scrape)
