"""``GET /`` and ``GET /static/<name>``: the web page's files, shipped in the package and
served through the file reply (ETag, 304, HEAD), and nothing else."""

from __future__ import annotations

import re

from slipstream.server.routes.web import ASSETS, web_directory
from tests.helpers.server import Served

REFERENCE = re.compile(r"""(?:src|href)="([^"]+)"|from "([^"]+)"|import\("([^"]+)"\)""")


async def test_the_page_is_html_with_a_strict_policy(served: Served) -> None:
    async with served.client() as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["cache-control"] == "no-cache"
        assert page.headers["x-content-type-options"] == "nosniff"
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "script-src 'self'" in policy
        assert page.headers["content-disposition"] == "inline"
        assert 'for="token">Access token</label>' in page.text
        again = await client.get("/", headers={"If-None-Match": page.headers["etag"]})
        assert again.status_code == 304
        head = await client.head("/")
        assert head.status_code == 200
        assert head.headers["content-length"] == str(len(page.content))


async def test_every_shipped_file_is_served_with_its_type(served: Served) -> None:
    async with served.client() as client:
        for name, content_type in ASSETS.items():
            reply = await client.get(f"/static/{name}")
            assert reply.status_code == 200, name
            assert reply.headers["content-type"] == content_type
            assert reply.content == (web_directory() / name).read_bytes()


async def test_everything_the_page_loads_is_shipped_and_local(served: Served) -> None:
    """Every script, style sheet and module import names a shipped file of this origin
    (nothing from a CDN: deployments are often offline)."""
    async with served.client() as client:
        for name in ASSETS:
            reply = await client.get(f"/static/{name}")
            assert reply.status_code == 200, name
            text = reply.text
            for match in REFERENCE.finditer(text):
                target = next(group for group in match.groups() if group)
                if target == "data:,":  # the empty favicon
                    continue
                assert "//" not in target, (name, target)
                shipped = target.removeprefix("/static/").removeprefix("./")
                assert shipped in ASSETS, (name, target)


async def test_nothing_else_is_reachable(served: Served) -> None:
    async with served.client() as client:
        for path in (
            "/static/",
            "/static/nope.js",
            "/static/web.py",
            "/static/../routes/web.py",
            "/static/%2e%2e/routes/web.py",
            "/static/index.html/",
            "/index.html",
        ):
            reply = await client.get(path)
            assert reply.status_code == 404, path
            assert set(reply.json()) == {"error"}
        post = await client.post("/")
        assert post.status_code == 405
        history = await client.get("/", params={"download_history": ""}, headers=served.auth)
        assert history.headers["content-type"] == "application/json"  # the seed 001 route
