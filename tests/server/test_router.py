"""``slipstream.server.router`` on its own: which handler answers a request, which
error (404, 405 with ``Allow``) when none does, and which surface's renderer shapes the
errors of a request.  No server, no sockets: requests are built by hand."""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import parse_qs, urlsplit

import pytest

from slipstream.errors import MethodNotAllowed, NotFound, SlipstreamError
from slipstream.server.errors import ErrorRenderer, error_headers, error_response
from slipstream.server.http import Request, Response, json_response
from slipstream.server.router import Route, Router

DOWNLOAD_KEYS = ("download", "downloads", "download_history")
"""The query keys of seed 001's ``GET /{directory}?download=URL`` family."""


def request(target: str, method: str = "GET") -> Request:
    """A parsed request for ``target`` (blank query values kept, as the server does)."""
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    return Request(method, target, parts.path, query, {})


def handler(name: str) -> Route:
    """A route that answers 200 with its own name."""

    async def route(_: Request) -> Response:
        return Response(200, body=name.encode())

    return route


def renderer(name: str) -> ErrorRenderer:
    """An error renderer that says which surface it belongs to."""

    def render(error: SlipstreamError) -> Response:
        return json_response(error.status, {"surface": name, "error": error.message})

    return render


async def answer(router: Router, target: str, method: str = "GET") -> str:
    """The name of the route that answers ``method target``."""
    response = await router(request(target, method))
    assert isinstance(response.body, bytes)
    return response.body.decode()


def method_routes(*specs: tuple[str, Iterable[str]]) -> Router:
    router = Router()
    for path, methods in specs:
        router.add(path, handler(path), methods)
    return router


# --- paths and methods ----------------------------------------------------------------


async def test_exact_paths_pick_their_handler_and_ignore_the_query() -> None:
    router = method_routes(("/healthz", ["GET"]), ("/api/download", ["GET"]))
    assert await answer(router, "/healthz") == "/healthz"
    assert await answer(router, "/api/download?filepath=a.txt") == "/api/download"


async def test_get_implies_head_but_no_other_method_does() -> None:
    router = Router()
    router.add("/file", handler("get"), ["GET"])
    router.add("/form", handler("post"), ["POST"])
    assert await answer(router, "/file", "HEAD") == "get"
    with pytest.raises(MethodNotAllowed) as refused:
        await router(request("/form", "HEAD"))
    assert refused.value.allowed == ("POST",)


async def test_a_head_route_of_its_own_is_not_replaced_by_get() -> None:
    router = Router()
    router.add("/file", handler("head"), ["HEAD"])
    router.add("/file", handler("get"), ["GET"])
    assert await answer(router, "/file", "HEAD") == "head"
    assert await answer(router, "/file", "GET") == "get"


async def test_no_route_is_404() -> None:
    router = method_routes(("/healthz", ["GET"]))
    for target in ("/nope", "/healthz/", "/HEALTHZ", "/healthzz", "/"):
        with pytest.raises(NotFound):
            await router(request(target))


async def test_a_path_without_the_method_is_405_with_the_paths_methods_in_allow() -> None:
    router = Router()
    router.add("/download", handler("post"), ["POST"])
    router.add("/stream", handler("get"), ["GET"])
    with pytest.raises(MethodNotAllowed) as refused:
        await router(request("/download", "GET"))
    assert sorted(refused.value.allowed) == ["POST"]
    with pytest.raises(MethodNotAllowed) as refused:
        await router(request("/stream", "DELETE"))
    assert sorted(refused.value.allowed) == ["GET", "HEAD"]
    assert ("Allow", "GET, HEAD") in error_headers(refused.value)
    assert refused.value.status == 405


async def test_prefixes_match_longest_first_and_an_exact_path_wins() -> None:
    router = Router()
    router.add_prefix("/s/", handler("short"))
    router.add_prefix("/s/app-", handler("long"))
    router.add("/s/exact", handler("exact"))
    assert await answer(router, "/s/root/a.txt") == "short"
    assert await answer(router, "/s/app-x/a.txt") == "long"
    assert await answer(router, "/s/exact") == "exact"
    assert await answer(router, "/s/root/a.txt", "HEAD") == "short"
    with pytest.raises(NotFound):
        await router(request("/s"))


async def test_a_prefix_without_the_method_is_405() -> None:
    router = Router()
    router.add_prefix("/downloads/", handler("cancel"), ["DELETE"])
    assert await answer(router, "/downloads/abc", "DELETE") == "cancel"
    with pytest.raises(MethodNotAllowed) as refused:
        await router(request("/downloads/abc", "GET"))
    assert refused.value.allowed == ("DELETE",)


async def test_an_exact_path_hides_the_prefix_routes_for_its_methods() -> None:
    """A path with an exact route is routed by that route's methods alone."""
    router = Router()
    router.add_prefix("/stream/", handler("stream"))
    router.add("/stream/", handler("missing"), ["POST"])
    with pytest.raises(MethodNotAllowed) as refused:
        await router(request("/stream/", "GET"))
    assert refused.value.allowed == ("POST",)


# --- query routes ---------------------------------------------------------------------


def download_router() -> Router:
    router = method_routes(("/healthz", ["GET", "POST"]), ("/downloads", ["GET"]))
    router.add_query_route(DOWNLOAD_KEYS, handler("query"), ["GET"])
    return router


@pytest.mark.parametrize(
    "target",
    [
        "/music?download=http%3A%2F%2Fu.example%2Fa.bin",
        "/?downloads",
        "/a/b/c?download_history=",
        "/healthz?download=x",  # a path with its own route
        "/downloads?downloads",
        "/nowhere?filepath=a&downloads=1",
    ],
)
async def test_a_download_query_key_claims_a_get_whatever_the_path(target: str) -> None:
    assert await answer(download_router(), target) == "query"


async def test_other_queries_and_other_methods_are_routed_by_path() -> None:
    router = download_router()
    assert await answer(router, "/healthz?downloadx=1") == "/healthz"
    assert await answer(router, "/healthz?Download=1") == "/healthz"
    assert await answer(router, "/healthz?download=x", "POST") == "/healthz"
    # GET does not imply HEAD for a query route: HEAD goes by path
    assert await answer(router, "/healthz?download=x", "HEAD") == "/healthz"
    with pytest.raises(NotFound):
        await router(request("/music?download=x", "HEAD"))


async def test_the_first_query_route_with_a_key_wins() -> None:
    router = Router()
    router.add_query_route(["a"], handler("first"))
    router.add_query_route(["a", "b"], handler("second"))
    assert await answer(router, "/x?a=1&b=2") == "first"
    assert await answer(router, "/x?b=2") == "second"


# --- error renderers ------------------------------------------------------------------


def surfaces() -> Router:
    """Four surfaces as the server has them: a default one, a prefix-owning one, a
    query-route one and one with a prefix route."""
    router = Router()
    router.group(error_response).add("/healthz", handler("health"))
    drive = router.group(renderer("drive"))
    drive.add("/v2/file/get", handler("get"), ["POST"])
    drive.own_prefix("/v2/")
    downloads = router.group(renderer("downloads"))
    downloads.add_query_route(DOWNLOAD_KEYS, handler("query"))
    downloads.add("/downloads", handler("list"))
    downloads.add_prefix("/downloads/", handler("cancel"), ["DELETE"])
    router.group(renderer("signed")).add_prefix("/s/", handler("signed"))
    return router


def owner(router: Router, target: str, method: str = "GET") -> str:
    """Which surface renders the errors of ``method target``."""
    render = router.renderer(request(target, method))
    if render is error_response:
        return "default"
    payload = render(NotFound()).body
    assert isinstance(payload, bytes)
    surface: str = json.loads(payload)["surface"]
    return surface


@pytest.mark.parametrize(
    ("target", "method", "surface"),
    [
        ("/healthz", "GET", "default"),
        ("/healthz", "DELETE", "default"),  # a 405 of the default surface
        ("/v2/file/get", "GET", "drive"),  # a 405 of the drive API
        ("/v2/file/nope", "POST", "drive"),  # no route, but under the drive's prefix
        ("/v2/", "POST", "drive"),
        ("/v2", "POST", "default"),  # not under "/v2/"
        ("/v3/file/get", "POST", "default"),
        ("/music?download=x", "GET", "downloads"),  # the query route claims it
        ("/v2/file/get?downloads", "GET", "downloads"),  # before the path's owner
        ("/v2/file/get?downloads", "POST", "drive"),  # a POST is not claimed
        ("/downloads", "POST", "downloads"),
        ("/downloads/abc", "GET", "downloads"),  # 405 on a prefix route
        ("/s/root/a.txt", "POST", "signed"),
        ("/nowhere", "GET", "default"),
    ],
)
def test_the_renderer_of_a_request_is_its_surfaces(target: str, method: str, surface: str) -> None:
    assert owner(surfaces(), target, method) == surface


def test_an_unparsed_request_gets_the_default_renderer() -> None:
    assert surfaces().renderer(None) is error_response


def test_the_longest_owned_prefix_wins() -> None:
    router = Router()
    router.group(renderer("outer")).own_prefix("/a/")
    router.group(renderer("inner")).own_prefix("/a/b/")
    assert owner(router, "/a/x") == "outer"
    assert owner(router, "/a/b/x") == "inner"


def test_a_route_without_a_renderer_takes_its_prefixs_shape() -> None:
    router = Router()
    router.add("/v2/plain", handler("plain"))
    router.group(renderer("drive")).own_prefix("/v2/")
    assert owner(router, "/v2/plain") == "drive"


def test_a_path_belongs_to_one_surface() -> None:
    router = Router()
    surface = router.group(renderer("one"))
    surface.add("/x", handler("get"))
    surface.add("/x", handler("post"), ["POST"])  # the same surface again: fine
    router.add("/x", handler("put"), ["PUT"])  # no renderer named: fine
    with pytest.raises(ValueError, match="another API surface"):
        router.group(renderer("two")).add("/x", handler("delete"), ["DELETE"])
    surface.add_prefix("/x/", handler("prefix"))
    with pytest.raises(ValueError, match="another API surface"):
        router.group(renderer("two")).add_prefix("/x/", handler("prefix"), ["POST"])
    assert owner(router, "/x", "PATCH") == "one"
    assert owner(router, "/x/y", "PATCH") == "one"
