"""A small router: query routes first, then exact paths, then path prefixes (longest
first); HEAD goes with GET on path routes.

A *query route* claims every request of its methods whose query string names one of
its keys, whatever the path (seed 001's ``GET /{directory}?download=URL`` may name any
directory, including one called like another route).  A path with routes but not for
the request's method is a 405 with the path's methods in ``Allow``; no route is a 404.

Each API surface adds its routes through a :class:`RouteGroup` (:meth:`Router.group`),
which registers the surface's error renderer with every route.  The router then says
which renderer answers the errors of a request (:meth:`Router.renderer`), also of
errors raised before any handler runs (404, 405) and of the connection's own (408,
413, 431): the query route that claims it, else the route of its path (exact, then
prefix), else the surface registered for the longest matching path prefix
(:meth:`Router.error_shape`), else the server's usual ``{"error": ...}`` shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from slipstream.errors import MethodNotAllowed, NotFound

from .errors import ErrorRenderer, error_response
from .http import Request, Response

Route = Callable[[Request], Awaitable[Response]]


class Router:
    """Maps ``(query keys | path, method)`` to a handler, and requests to error shapes."""

    def __init__(self) -> None:
        self._routes: dict[str, dict[str, Route]] = {}
        self._prefixes: list[tuple[str, dict[str, Route]]] = []
        self._query_routes: list[tuple[frozenset[str], dict[str, Route], ErrorRenderer, str]] = []
        self._shapes: list[tuple[str, ErrorRenderer]] = []
        self._path_errors: dict[str, ErrorRenderer] = {}
        self._prefix_errors: dict[str, ErrorRenderer] = {}

    def group(self, errors: ErrorRenderer) -> RouteGroup:
        """The routes of one API surface, whose errors ``errors`` renders."""
        return RouteGroup(self, errors)

    def add(
        self,
        path: str,
        handler: Route,
        methods: Iterable[str] = ("GET",),
        *,
        errors: ErrorRenderer | None = None,
    ) -> None:
        """Register ``handler`` for ``path``; GET implies HEAD.

        ``errors`` renders the errors of requests for ``path`` (None: the shape of its
        prefix, else the usual one).  A path has one renderer, whatever the method.
        """
        _add_methods(self._routes.setdefault(path, {}), handler, methods)
        _own(self._path_errors, path, errors)

    def add_prefix(
        self,
        prefix: str,
        handler: Route,
        methods: Iterable[str] = ("GET",),
        *,
        errors: ErrorRenderer | None = None,
    ) -> None:
        """Register ``handler`` for every path starting with ``prefix`` (no exact route)."""
        table = dict(self._prefixes).get(prefix)
        if table is None:
            table = {}
            self._prefixes.append((prefix, table))
            self._prefixes.sort(key=lambda entry: len(entry[0]), reverse=True)
        _add_methods(table, handler, methods)
        _own(self._prefix_errors, prefix, errors)

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
        keys = frozenset(keys)
        label = "/{dir}?" + "|".join(sorted(keys))
        self._query_routes.append((keys, dict.fromkeys(methods, handler), errors, label))

    def error_shape(self, prefix: str, render: ErrorRenderer) -> None:
        """Errors of requests under ``prefix`` (not claimed by a query route, and on a
        path whose route names no renderer) use ``render``."""
        self._shapes.append((prefix, render))
        self._shapes.sort(key=lambda entry: len(entry[0]), reverse=True)

    def renderer(self, request: Request | None) -> ErrorRenderer:
        """The error renderer of the surface that owns ``request`` (None: not parsed)."""
        if request is None:
            return error_response
        claimed = self._query_route(request)
        if claimed is not None:
            return claimed[1]
        path = request.path
        if path in self._routes:
            render = self._path_errors.get(path)
        else:
            prefix = next((p for p, _ in self._prefixes if path.startswith(p)), None)
            render = None if prefix is None else self._prefix_errors.get(prefix)
        if render is not None:
            return render
        return next((r for p, r in self._shapes if path.startswith(p)), error_response)

    async def __call__(self, request: Request) -> Response:
        """Run the handler of ``request``; sets ``request.route`` to its route's pattern
        (a bounded set of values: metrics are labelled with it)."""
        claimed = self._query_route(request)
        if claimed is not None:
            request.route = claimed[2]
            return await claimed[0](request)
        table = self._routes.get(request.path)
        if table is not None:
            request.route = request.path
        else:
            for prefix, table in self._prefixes:  # noqa: B007 - the match is used below
                if request.path.startswith(prefix):
                    request.route = prefix + "*"
                    break
            else:
                raise NotFound(f"no route for {request.path}")
        handler = table.get(request.method)
        if handler is None:
            raise MethodNotAllowed(
                f"method {request.method} not allowed on {request.path}", allowed=table
            )
        return await handler(request)

    def _query_route(self, request: Request) -> tuple[Route, ErrorRenderer, str] | None:
        if not request.query:
            return None
        for keys, table, errors, label in self._query_routes:
            handler = table.get(request.method)
            if handler is not None and not keys.isdisjoint(request.query):
                return handler, errors, label
        return None


@dataclass(frozen=True, slots=True)
class RouteGroup:
    """The routes of one API surface: each is registered with the surface's renderer.

    Handlers of the group raise (or return) error values; the connection hands every
    error of a request the group owns to ``errors``, the only place its replies'
    error bodies are built.
    """

    router: Router
    errors: ErrorRenderer

    def add(self, path: str, handler: Route, methods: Iterable[str] = ("GET",)) -> None:
        """:meth:`Router.add` with this group's renderer."""
        self.router.add(path, handler, methods, errors=self.errors)

    def add_prefix(self, prefix: str, handler: Route, methods: Iterable[str] = ("GET",)) -> None:
        """:meth:`Router.add_prefix` with this group's renderer."""
        self.router.add_prefix(prefix, handler, methods, errors=self.errors)

    def add_query_route(
        self, keys: Iterable[str], handler: Route, methods: Iterable[str] = ("GET",)
    ) -> None:
        """:meth:`Router.add_query_route` with this group's renderer."""
        self.router.add_query_route(keys, handler, methods, errors=self.errors)

    def own_prefix(self, prefix: str) -> None:
        """Every error under ``prefix`` is this surface's, also on paths with no route."""
        self.router.error_shape(prefix, self.errors)


def _own(owners: dict[str, ErrorRenderer], key: str, errors: ErrorRenderer | None) -> None:
    """Record that ``errors`` renders the errors of ``key`` (one renderer per path)."""
    if errors is None:
        return
    if owners.setdefault(key, errors) is not errors:
        raise ValueError(f"{key!r} already belongs to another API surface")


def _add_methods(table: dict[str, Route], handler: Route, methods: Iterable[str]) -> None:
    for method in methods:
        table[method] = handler
        if method == "GET":
            table.setdefault("HEAD", handler)
