"""A small router: exact paths, then path prefixes (longest first), then a fallback;
HEAD goes with GET."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from slipstream.errors import MethodNotAllowed, NotFound

from .http import Request, Response

Route = Callable[[Request], Awaitable[Response]]


class Router:
    """Maps ``(path, method)`` to a handler."""

    def __init__(self) -> None:
        self._routes: dict[str, dict[str, Route]] = {}
        self._prefixes: list[tuple[str, dict[str, Route]]] = []
        self._fallback: dict[str, Route] = {}

    def add(self, path: str, handler: Route, methods: Iterable[str] = ("GET",)) -> None:
        """Register ``handler`` for ``path``; GET implies HEAD."""
        _add_methods(self._routes.setdefault(path, {}), handler, methods)

    def add_prefix(self, prefix: str, handler: Route, methods: Iterable[str] = ("GET",)) -> None:
        """Register ``handler`` for every path starting with ``prefix`` (no exact route)."""
        table = dict(self._prefixes).get(prefix)
        if table is None:
            table = {}
            self._prefixes.append((prefix, table))
            self._prefixes.sort(key=lambda entry: len(entry[0]), reverse=True)
        _add_methods(table, handler, methods)

    def fallback(self, handler: Route, methods: Iterable[str] = ("GET",)) -> None:
        """Register ``handler`` for every path no exact or prefix route matches.

        Only the methods named (GET does not imply HEAD here); other methods get 404.
        """
        for method in methods:
            self._fallback[method] = handler

    async def __call__(self, request: Request) -> Response:
        table = self._routes.get(request.path)
        if table is None:
            table = next((t for p, t in self._prefixes if request.path.startswith(p)), None)
        if table is None and request.method in self._fallback:
            table = self._fallback
        if table is None:
            raise NotFound(f"no route for {request.path}")
        handler = table.get(request.method)
        if handler is None:
            raise MethodNotAllowed(f"method {request.method} not allowed on {request.path}")
        return await handler(request)


def _add_methods(table: dict[str, Route], handler: Route, methods: Iterable[str]) -> None:
    for method in methods:
        table[method] = handler
        if method == "GET":
            table.setdefault("HEAD", handler)
