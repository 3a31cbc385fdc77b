"""The access log never holds a credential: ``?token=`` and a presigned URL's ``sig=``
are masked however the name is spelt, and the rest of the target is kept as sent."""

from __future__ import annotations

import logging
from urllib.parse import quote, urlsplit

import pytest

from slipstream.server.redact import CREDENTIAL_PARAMS, redact_target
from tests.helpers.presigned import issue
from tests.helpers.server import TOKEN, Served, StartServer

ACCESS = "slipstream.access"


async def logged_server(start_server: StartServer, caplog: pytest.LogCaptureFixture) -> Served:
    """A server with its access log on, captured by ``caplog``."""
    caplog.set_level(logging.INFO, logger=ACCESS)
    return await start_server(access_log=True)


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == ACCESS]


async def test_presigned_signature_is_masked(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    served = await logged_server(start_server, caplog)
    url = urlsplit(issue(served, "small.txt"))
    signature = dict(field.split("=", 1) for field in url.query.split("&"))["sig"]
    target = f"{url.path}?{url.query}"
    async with served.client() as client:
        assert (await client.get(target)).status_code == 200
        assert (await client.head(target, headers={"Range": "bytes=0-9"})).status_code == 206
    lines = access_lines(caplog)
    assert len(lines) == 2
    assert signature not in caplog.text
    expected = target.replace(f"sig={signature}", "sig=***")
    assert expected != target
    assert f'"GET {expected}" 200' in lines[0]
    assert f'"HEAD {expected}" 206' in lines[1]


@pytest.mark.parametrize(
    "name", ["token", "TOKEN", "Token", "%74oken", "%54OKEN", "t%6Fken", "%2574oken"]
)
async def test_token_is_masked_however_its_name_is_spelt(
    name: str, start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    served = await logged_server(start_server, caplog)
    target = f"/api/download?filepath=small.txt&{name}={quote(TOKEN)}&fstype=OsFs"
    async with served.client() as client:
        status = (await client.get(target)).status_code
    if name in ("token", "%74oken", "t%6Fken"):  # the spellings the server accepts
        assert status == 200
    (line,) = access_lines(caplog)
    assert TOKEN not in caplog.text
    assert f'"GET /api/download?filepath=small.txt&{name}=***&fstype=OsFs" {status}' in line


async def test_signature_with_an_encoded_name_is_masked(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    served = await logged_server(start_server, caplog)
    url = urlsplit(issue(served, "small.txt"))
    fields = url.query.split("&")
    signature = next(f for f in fields if f.startswith("sig=")).removeprefix("sig=")
    encoded = "&".join(f.replace("sig=", "%73IG=", 1) for f in fields)
    async with served.client() as client:
        await client.get(f"{url.path}?{encoded}")
    (line,) = access_lines(caplog)
    assert signature not in line and "%73IG=***" in line


def test_only_credential_values_change() -> None:
    for name in CREDENTIAL_PARAMS:
        assert redact_target(f"/x?a=1&{name.upper()}=v") == f"/x?a=1&{name.upper()}=***"
    kept = [
        "/healthz",
        "/api/download?filepath=a%20b.txt",
        "/x?tokens=1&my_token=2&sig_x=3&signature=4",  # other names
        "/x?token",  # no value to hide
        "/x?a=1&&b=%3D&",
        "/token=1/sig=2",  # path, not query
    ]
    for target in kept:
        assert redact_target(target) == target
    assert redact_target("/x?token=a=b&token=c&x=token%3Dd") == "/x?token=***&token=***&x=token%3Dd"
    assert redact_target("/s/a/b?expires=1&etag=%22e%22&sig=S+/=") == (
        "/s/a/b?expires=1&etag=%22e%22&sig=***"
    )
    assert redact_target("/x?token=") == "/x?token=***"
    assert redact_target("/x?%2573ig=v") == "/x?%2573ig=***"
    assert redact_target("/x?%252573ig=v") == "/x?%252573ig=***"
