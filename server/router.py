"""A small exact-path router; HEAD is accepted wherever GET is."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from slipstream.errors import MethodNotAllowed, NotFound

from .http import Request, Response

Route = Callable[[Request], Awaitable[Response]]


class Router:
    """Maps ``(path, method)`` to a handler."""

    def __init__(self) -> None:
        self._routes: dict[str, dict[str, Route]] = {}

    def add(self, path: str, handler: Route, methods: Iterable[str] = ("GET",)) -> None:
        """Register ``handler`` for ``path``; GET implies HEAD."""
        table = self._routes.setdefault(path, {})
        for method in methods:
            table[method] = handler
            if method == "GET":
                table.setdefault("HEAD", handler)

    async def __call__(self, request: Request) -> Response:
        table = self._routes.get(request.path)
        if table is None:
            raise NotFound(f"no route for {request.path}")
        handler = table.get(request.method)
        if handler is None:
            raise MethodNotAllowed(f"method {request.method} not allowed on {request.path}")
        return await handler(request)
