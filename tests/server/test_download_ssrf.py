"""SSRF corpus against ``GET /{dir}?download=URL`` with the DEFAULT network policy.

The server runs with ``allow_download=True`` and private networks NOT allowed.  A
"target" upstream listens on 127.0.0.1 with a secret; every URL of the corpus names it
(or another internal address) in some spelling.  Each one must be refused with ``403
DOMAIN_BLOCKED`` when the job is started, or (redirects, DNS rebinding) start and then
fail with ``DOMAIN_BLOCKED`` in the history.  At the end the target must have seen zero
connections.

Names are resolved by :class:`~tests.helpers.fakenet.FakeNet`: invented ``.example`` names
from a table, anything else by the system resolver (so ``2130706433``, ``0x7f000001``,
``127.1`` ... go through the real ``getaddrinfo``).  ``files.example`` is a public-looking
front (``93.184.215.14``, dialled to a loopback "front" upstream that redirects).
"""

from __future__ import annotations

from typing import Any

import httpx
import trio

from slipstream.server import App
from tests.helpers.fakenet import PUBLIC, FakeNet
from tests.helpers.server import StartServer
from tests.helpers.upstream import Blob, Redirect, Upstream

FOLDER = "dl"

#: Refused when the job is started: ``{p}`` is the target upstream's port.
START_REFUSED = [
    "http://127.0.0.1:{p}/secret",
    "http://localhost:{p}/secret",
    "http://127.1:{p}/secret",
    "http://127.0.1:{p}/secret",
    "http://2130706433:{p}/secret",
    "http://017700000001:{p}/secret",
    "http://0x7f000001:{p}/secret",
    "http://0177.0.0.1:{p}/secret",
    "http://0x7f.0.0.1:{p}/secret",
    "http://0x7f.1:{p}/secret",
    "http://127.0.0.1.:{p}/secret",
    "http://localhost.:{p}/secret",
    "http://[::1]:{p}/secret",
    "http://[0:0:0:0:0:0:0:1]:{p}/secret",
    "http://[::ffff:127.0.0.1]:{p}/secret",
    "http://[::ffff:7f00:1]:{p}/secret",
    "http://[0:0:0:0:0:ffff:127.0.0.1]:{p}/secret",
    "http://[::127.0.0.1]:{p}/secret",
    "http://[64:ff9b::7f00:1]:{p}/secret",
    "http://[2002:7f00:1::]:{p}/secret",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{p}/secret",  # Teredo around 127.0.0.1
    "http://[::]:{p}/secret",
    "http://0.0.0.0:{p}/secret",
    "http://0:{p}/secret",
    "http://10.0.0.1:{p}/secret",
    "http://192.168.1.1:{p}/secret",
    "http://172.16.0.1:{p}/secret",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://100.100.100.200/latest/meta-data/",
    "http://100.64.0.1:{p}/secret",
    "http://[fe80::1]:{p}/secret",
    "http://[fe80::1%25eth0]:{p}/secret",
    "http://[fc00::1]:{p}/secret",
    "http://224.0.0.1:{p}/secret",
    "http://[ff02::1]:{p}/secret",
    "http://255.255.255.255:{p}/secret",
    # names that resolve inward (injected resolver)
    "http://loopback.example:{p}/secret",
    "http://mixed.example:{p}/secret",
    "http://mixed-reversed.example:{p}/secret",
    "http://mapped.example:{p}/secret",
    "http://metadata.example/latest/meta-data/",
    # userinfo confusion: the host is what follows the LAST "@"
    "http://user@127.0.0.1:{p}/secret",
    "http://files.example@127.0.0.1:{p}/secret",
    "http://files.example:80@127.0.0.1:{p}/secret",
    "http://user@127.0.0.1@localhost:{p}/secret",
    "http://user:pass@localhost:{p}/secret",
    # case and scheme spellings
    "HTTP://127.0.0.1:{p}/secret",
    "hTtP://LocalHost:{p}/secret",
    "http://LOCALHOST.:{p}/secret",
    "https://127.0.0.1:{p}/secret",
    "http://127.0.0.1:{p}/secret?x=1#frag",
    # IDNA / Unicode spellings that normalise to loopback
    "http://\u24db\u24de\u24d2\u24d0\u24db\u24d7\u24de\u24e2\u24e3:{p}/secret",  # circled
    "http://loc\uff41lhost:{p}/secret",  # fullwidth "a"
    "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{p}/secret",  # fullwidth digits
    "http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11:{p}/secret",  # and dots
]

#: Started (the first hop looks public), then failed with DOMAIN_BLOCKED: the front
#: upstream redirects each ``/r/N`` to ``location`` with ``status``.
REDIRECTS: list[tuple[str, int]] = [
    ("http://127.0.0.1:{p}/secret", 302),
    ("http://localhost:{p}/secret", 301),
    ("//127.0.0.1:{p}/secret", 302),
    ("http://2130706433:{p}/secret", 307),
    ("http://0x7f000001:{p}/secret", 308),
    ("http://127.1:{p}/secret", 303),
    ("http://[::1]:{p}/secret", 302),
    ("http://[::ffff:127.0.0.1]:{p}/secret", 302),
    ("http://user@127.0.0.1:{p}/secret", 302),
    ("HTTP://LOCALHOST.:{p}/secret", 302),
    ("http://loopback.example:{p}/secret", 302),
    ("http://mixed.example:{p}/secret", 302),
    ("http://169.254.169.254/latest/meta-data/", 302),
    ("http://10.0.0.1:{p}/secret", 302),
    ("/r/hop", 302),  # a same-host hop first, then loopback
]

#: Not even a URL we fetch: 400 INVALID_URL.
INVALID = [
    "file:///etc/passwd",
    "gopher://127.0.0.1:{p}/_secret",
    "dict://127.0.0.1:{p}/",
    "ftp://127.0.0.1:{p}/secret",
    "http://127.0.0.1:{p}\\@files.example/secret",
    "http://127.0.0.1:{p} /secret",
    "http:///secret",
]


def make_net(front: Upstream) -> FakeNet:
    """The fake DNS of the scene (see the module docstring)."""
    net = FakeNet({PUBLIC: front.port or 0})
    net.name("files.example", [PUBLIC])
    net.name("loopback.example", ["127.0.0.1"])
    net.name("mixed.example", [PUBLIC, "127.0.0.1"])
    net.name("mixed-reversed.example", ["127.0.0.1", PUBLIC])
    net.name("mapped.example", ["::ffff:127.0.0.1"])
    net.name("metadata.example", ["169.254.169.254"])
    net.name("rebind.example", [PUBLIC], ["127.0.0.1"])
    return net


async def start(client: httpx.AsyncClient, url: str) -> httpx.Response:
    """``GET /dl?download=URL``."""
    return await client.get(f"/{FOLDER}", params={"download": url})


async def test_ssrf_corpus_never_reaches_the_target(
    start_server: StartServer, nursery: trio.Nursery
) -> None:
    target, front = Upstream(), Upstream()
    await nursery.start(target.run)
    await nursery.start(front.run)
    target.add("/secret", Blob(b"internal secret\n"))
    front.add("/ok.bin", Blob(b"public content\n"))
    p = target.port
    net = make_net(front)

    app = App(resolver=net.resolve, dialer=net.dial)

    served = await start_server(allow_download=True, app=app)
    policy = served.server.services.policy
    assert not policy.allow_private_networks and not policy.allow_domains
    problems: list[str] = []
    started: dict[str, str] = {}  # job id -> url

    async with served.client(headers=served.auth) as client:
        # Control: a public-looking URL works, so refusals below are the policy's doing.
        reply = await start(client, "http://files.example/ok.bin")
        assert reply.status_code == 202, reply.text
        control = reply.json()["download_id"]

        for template in START_REFUSED:
            url = template.format(p=p)
            reply = await start(client, url)
            body: dict[str, Any] = reply.json()
            if reply.status_code != 403 or body.get("error") != "DOMAIN_BLOCKED":
                problems.append(f"start {url!r}: {reply.status_code} {body}")
            elif body["success"] is not False or body["download_id"] is not None:
                problems.append(f"start {url!r}: malformed refusal {body}")

        front.add("/r/hop", Redirect(f"http://loopback.example:{p}/secret"))
        for n, (template, status) in enumerate(REDIRECTS):
            front.add(f"/r/{n}", Redirect(template.format(p=p), status))
            started.update(await expect_started(client, f"http://files.example/r/{n}", problems))
        rebind = f"http://rebind.example:{p}/secret"
        started.update(await expect_started(client, rebind, problems))

        for template in INVALID:
            url = template.format(p=p)
            reply = await start(client, url)
            if reply.status_code != 400 or reply.json().get("error") != "INVALID_URL":
                problems.append(f"invalid {url!r}: {reply.status_code} {reply.text}")

        async def idle() -> bool:
            reply = await client.get("/api/v1/downloads")
            return bool(reply.json()["downloads"] == [])

        deadline = trio.current_time() + 15
        while not await idle():
            assert trio.current_time() < deadline, "jobs did not finish"
            await trio.sleep(0.05)
        history = {
            row["id"]: row for row in (await client.get("/?download_history=")).json()["history"]
        }

    assert history[control]["status"] == "completed"
    for job_id, url in started.items():
        row = history.get(job_id)
        if row is None or row["status"] != "failed" or row["error"] != "DOMAIN_BLOCKED":
            problems.append(f"job for {url!r} ended as {row}")
        elif row["total_bytes"] is not None:
            problems.append(f"job for {url!r} has total_bytes {row['total_bytes']}")
    for path in [f"/r/{n}" for n in range(len(REDIRECTS))] + ["/r/hop"]:
        if len(front.requests_for(path)) != 1:
            problems.append(f"{path} was requested {len(front.requests_for(path))} times")
    # preflight saw the public answer; the connection's own lookup got 127.0.0.1
    assert net.lookups.count("rebind.example") == 2

    assert problems == []
    assert len(START_REFUSED) + len(REDIRECTS) + 1 >= 30
    assert target.connections == 0
    assert target.requests == []
    assert {address for address, _port in net.dialed} == {PUBLIC}
    folder = served.root / FOLDER
    assert sorted(entry.name for entry in folder.iterdir()) == ["ok.bin"]


async def expect_started(
    client: httpx.AsyncClient, url: str, problems: list[str]
) -> dict[str, str]:
    """Start a job that must be accepted (its first hop looks public): {id: url}."""
    reply = await start(client, url)
    if reply.status_code != 202:
        problems.append(f"start {url!r}: expected 202, got {reply.status_code} {reply.text}")
        return {}
    return {reply.json()["download_id"]: url}


#: A job's URL -> the request target the upstream must see (and the ``url`` the job lists).
CANONICAL_JOBS = {
    "http://files.example/a/./b/../one.bin": "/a/one.bin",
    "HTTP://FILES.example.:80/x/%2e%2E/two.bin?v=%7e#/../frag": "/two.bin?v=%7e",
    "http://files.example/d/.%2e/caf\u00e9 {3}.bin?q=\u00e9".replace(" ", "%20"): (
        "/caf%C3%A9%20%7B3%7D.bin?q=%C3%A9"
    ),
    "http://files.example/hop/four": "/four.bin",  # redirected to "../four.bin"
}


async def test_a_job_sends_exactly_the_url_it_checked(
    start_server: StartServer, nursery: trio.Nursery
) -> None:
    """Remote-download jobs go through the same canonical form as the zip service: the
    URL the policy judged (and the job lists) is the URL on the wire, every hop."""
    front = Upstream()
    await nursery.start(front.run)
    for target in CANONICAL_JOBS.values():
        front.add(target.split("?")[0], Blob(b"body of " + target.encode()))
    front.add("/hop/four", Redirect("../four.bin"))
    net = make_net(front)

    app = App(resolver=net.resolve, dialer=net.dial)

    served = await start_server(allow_download=True, app=app)
    async with served.client(headers=served.auth) as client:
        ids = {}
        for url in CANONICAL_JOBS:
            reply = await start(client, url)
            assert reply.status_code == 202, reply.text
            ids[reply.json()["download_id"]] = url
        with trio.fail_after(10):
            while (await client.get("/api/v1/downloads")).json()["downloads"]:
                await trio.sleep(0.02)
        history = (await client.get("/?download_history=")).json()["history"]
    listed = {row["id"]: row for row in history}
    for job_id, url in ids.items():
        row = listed[job_id]
        assert row["status"] == "completed", row
        wanted = CANONICAL_JOBS[url]
        if url.endswith("/hop/four"):
            assert row["url"] == "http://files.example/hop/four"
        else:
            assert row["url"] == "http://files.example" + wanted
    sent = sorted(r.target for r in front.requests)
    assert sent == sorted([*CANONICAL_JOBS.values(), "/hop/four"])
