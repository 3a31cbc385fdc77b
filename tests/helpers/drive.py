"""The drive API from the client side: posting to it, reading its errors and times."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.helpers.server import Served

URL = "/v2/file/get_download_url"
GET = "/v2/file/get"
LIST = "/v2/file/list"
ITEM_KEYS = {"drive_id", "file_id", "parent_file_id", "name", "type", "size", "updated_at"}


async def post(served: Served, path: str, body: Any, *, auth: bool = True) -> httpx.Response:
    """POST ``body`` (JSON-encoded unless it is bytes) with the valid token."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **(served.auth if auth else {})}
    async with served.client() as client:
        return await client.post(path, content=content, headers=headers)


async def fetch(url: str, **headers: str) -> httpx.Response:
    """GET an absolute URL (no credentials: the signature is the credential)."""
    async with httpx.AsyncClient(timeout=10, verify=False) as client:
        return await client.get(url, headers=headers)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message"}
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    return body


def parse_time(text: str) -> datetime:
    assert text.endswith("Z")
    parsed = datetime.fromisoformat(text)
    assert parsed.utcoffset() == timedelta(0)
    return parsed


def rfc3339_of(ns: int) -> str:
    """Independent formatting of a modification time (milliseconds, UTC)."""
    moment = datetime.fromtimestamp(ns // 10**9, UTC) + timedelta(milliseconds=ns % 10**9 // 10**6)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
