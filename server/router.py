"""A small router: query routes first, then exact paths, then path prefixes (longest
first); HEAD goes with GET on path routes.

A *query route* claims every request of its methods whose query string names one of
its keys, whatever the path (seed 001's ``GET /{directory}?download=URL`` may name any
directory, including one called like another route).  A path with routes but not for
the request's method is a 405 with the path's methods in ``Allow``; no route is a 404.

The router also says which API surface owns the errors of a request
(:meth:`Router.renderer`): the query route that claims it, else the surface registered
for the longest matching path prefix (:meth:`Router.error_shape`), else the server's
usual ``{"error": ...}`` shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from slipstream.errors import MethodNotAllowed, NotFound

from .errors import ErrorRenderer, error_response
from .http import Request, Response

Route = Callable[[Request], Awaitable[Response]]


class Router:
    """Maps ``(query keys | path, method)`` to a handler, and requests to error shapes."""

    def __init__(self) -> None:
        self._routes: dict[str, dict[str, Route]] = {}
        self._prefixes: list[tuple[str, dict[str, Route]]] = []
        self._query_routes: list[tuple[frozenset[str], dict[str, Route], ErrorRenderer]] = []
        self._shapes: list[tuple[str, ErrorRenderer]] = []

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

    def add_query_route(
        self,
        keys: Iterable[str],
        handler: Route,
        methods: Iterable[str] = ("GET",),
        *,
        errors: ErrorRenderer = error_response,
    ) -> None:
        """Register ``handler`` for every request whose query has one of ``keys``.

        Checked before any path.  Only the methods named (GET does not imply HEAD
        here: a query route may act); requests of other methods are routed by path.
        ``errors`` renders the errors of the requests it claims.
        """
        self._query_routes.append((frozenset(keys), dict.fromkeys(methods, handler), errors))

    def error_shape(self, prefix: str, render: ErrorRenderer) -> None:
        """Errors of requests under ``prefix`` (not claimed by a query route) use ``render``."""
        self._shapes.append((prefix, render))
        self._shapes.sort(key=lambda entry: len(entry[0]), reverse=True)

    def renderer(self, request: Request | None) -> ErrorRenderer:
        """The error renderer of the surface that owns ``request`` (None: not parsed)."""
        if request is None:
            return error_response
        claimed = self._query_route(request)
        if claimed is not None:
            return claimed[1]
        return next((r for p, r in self._shapes if request.path.startswith(p)), error_response)

    async def __call__(self, request: Request) -> Response:
        claimed = self._query_route(request)
        if claimed is not None:
            return await claimed[0](request)
        table = self._routes.get(request.path)
        if table is None:
            table = next((t for p, t in self._prefixes if request.path.startswith(p)), None)
        if table is None:
            raise NotFound(f"no route for {request.path}")
        handler = table.get(request.method)
        if handler is None:
            raise MethodNotAllowed(
                f"method {request.method} not allowed on {request.path}", allowed=table
            )
        return await handler(request)

    def _query_route(self, request: Request) -> tuple[Route, ErrorRenderer] | None:
        if not request.query:
            return None
        for keys, table, errors in self._query_routes:
            handler = table.get(request.method)
            if handler is not None and not keys.isdisjoint(request.query):
                return handler, errors
        return None


def _add_methods(table: dict[str, Route], handler: Route, methods: Iterable[str]) -> None:
    for method in methods:
        table[method] = handler
        if method == "GET":
            table.setdefault("HEAD", handler)
