"""One error model per API surface (no server needed): each route group registers its
renderer with the router, which hands it every error of the requests the group owns;
the renderers turn error values into the surface's replies."""

from __future__ import annotations

import json

import pytest

from slipstream.errors import (
    FileNotFound,
    InternalError,
    IsADirectory,
    MethodNotAllowed,
    NotFound,
    PathNotAllowed,
    SlipstreamError,
    Unauthorized,
)
from slipstream.server.errors import error_response
from slipstream.server.http import Request, Response, json_response
from slipstream.server.router import Router
from slipstream.server.routes.drive_errors import DriveError, render_drive_error
from slipstream.server.routes.remote_downloads import (
    DownloadError,
    StartRefused,
    render_download_error,
)
from slipstream.server.routes.zip_streams import render_zip_error
from slipstream.wsprotocol import Status
from slipstream.zip.errors import ZipError


def request(path: str, method: str = "GET", query: dict[str, list[str]] | None = None) -> Request:
    return Request(method=method, target=path, path=path, query=query or {}, headers={})


def shape(status: int) -> Response:
    return json_response(status, {"shape": "surface"})


def surface(error: SlipstreamError) -> Response:
    return shape(error.status)


def other(error: SlipstreamError) -> Response:
    return shape(599)


async def ok(request: Request) -> Response:
    return json_response(200, {})


def test_a_group_renders_the_errors_of_every_route_it_adds() -> None:
    router = Router()
    routes = router.group(surface)
    routes.add("/exact", ok, methods=("POST",))
    routes.add_prefix("/files/", ok)
    routes.add_query_route(["job"], ok)
    router.add("/plain", ok)
    assert router.renderer(request("/exact")) is surface  # a 405 there
    assert router.renderer(request("/files/a/b")) is surface
    assert router.renderer(request("/anywhere", query={"job": ["1"]})) is surface
    assert router.renderer(request("/plain")) is error_response
    assert router.renderer(request("/nowhere")) is error_response
    assert router.renderer(None) is error_response


def test_an_owned_prefix_covers_paths_without_routes_and_routes_of_no_group() -> None:
    router = Router()
    routes = router.group(surface)
    routes.add("/v9/get", ok, methods=("POST",))
    routes.own_prefix("/v9/")
    router.add("/v9/legacy", ok)  # no renderer of its own: its prefix's
    router.group(other).add("/v9/other", ok)
    assert router.renderer(request("/v9/missing")) is surface
    assert router.renderer(request("/v9/legacy")) is surface
    assert router.renderer(request("/v9/other")) is other


def test_a_path_belongs_to_one_surface() -> None:
    router = Router()
    router.group(surface).add("/shared", ok)
    router.group(surface).add("/shared", ok, methods=("POST",))  # the same renderer
    with pytest.raises(ValueError, match="another API surface"):
        router.group(other).add("/shared", ok, methods=("PUT",))
    router.group(surface).add_prefix("/p/", ok)
    with pytest.raises(ValueError, match="another API surface"):
        router.group(other).add_prefix("/p/", ok, methods=("DELETE",))


def body(response: Response) -> object:
    assert isinstance(response.body, bytes)
    return json.loads(response.body)


def test_the_zip_renderer_answers_in_the_errors_format_and_plain_otherwise() -> None:
    error = ZipError("UNAUTHORIZED_URIS", ["http://x/a"], fmt="json")
    response = render_zip_error(error)
    assert (response.status, response.headers, response.body) == error.render()
    assert body(response) == {
        "fs_error_key": "UNAUTHORIZED_URIS",
        "fs_error_message": error.message,
        "fs_error_records": ["http://x/a"],
    }
    plain = render_zip_error(MethodNotAllowed(allowed=["POST"]))
    assert plain.status == 405 and body(plain) == {"error": "method not allowed"}
    assert ("Allow", "POST") in plain.headers


def test_the_seed_001_renderer() -> None:
    refused = StartRefused("INVALID_TIMEOUT", 400, "bad timeout", filename="a.iso", path="d/a.iso")
    assert body(render_download_error(refused)) == {
        "download_id": None,
        "filename": "a.iso",
        "path": "d/a.iso",
        "success": False,
        "message": "bad timeout",
        "error": "INVALID_TIMEOUT",
    }
    missing = render_download_error(DownloadError("DOWNLOAD_NOT_FOUND", 404))
    assert missing.status == 404
    assert body(missing) == {"success": False, "error": "DOWNLOAD_NOT_FOUND"}
    auth = render_download_error(Unauthorized())
    assert auth.status == 401 and body(auth) == {"error": "missing or invalid access token"}


def test_the_drive_renderer_maps_every_error_and_keeps_its_own() -> None:
    own = DriveError(404, "NotFound.Drive", "drive 9 does not exist")
    assert isinstance(own, SlipstreamError)
    assert body(render_drive_error(own)) == {"code": "NotFound.Drive", "message": own.message}
    denied = render_drive_error(DriveError(401, "AccessTokenInvalid", "no"))
    assert ("WWW-Authenticate", 'Bearer realm="slipstream"') in denied.headers
    assert body(render_drive_error(InternalError())) == {
        "code": "InternalError",
        "message": "internal server error",
    }


def test_the_websocket_renderer_gives_type_7_statuses() -> None:
    from slipstream.server.ws import InvalidResumeOffset, ws_status

    assert ws_status(PathNotAllowed()) is Status.NOT_AUTHORIZED
    assert ws_status(FileNotFound("a")) is Status.FILE_NOT_FOUND
    assert ws_status(IsADirectory("d")) is Status.FILE_NOT_FOUND
    assert ws_status(NotFound()) is Status.FILE_NOT_FOUND
    assert ws_status(InvalidResumeOffset()) is Status.FILE_INVALID_RESUME_OFFSET
    assert ws_status(InternalError()) is Status.INTERNAL_SERVER_ERROR
