"""The metrics module without a server: names and labels, the exposition, separate
registries, the job and digest counters, the multiprocess check, and the flags."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from slipstream.errors import NotFound
from slipstream.server import Config
from slipstream.server.cli import build_parser, config_from_args
from slipstream.server.cli_flags import host_port
from slipstream.server.config import ConfigError
from slipstream.server.http import Request, Response
from slipstream.server.http1 import request_of
from slipstream.server.metrics import Metrics, multiprocess_problem
from slipstream.server.router import Router
from tests.helpers.metrics import parse, value


def text(metrics: Metrics, accept: str | None = None) -> str:
    body, _ = metrics.exposition(accept)
    return body.decode()


def test_every_name_has_the_prefix_and_follows_the_conventions() -> None:
    families = list(text_string_to_metric_families(text(Metrics())))
    names = {family.name for family in families}
    assert names >= {
        "slipstream_http_requests",
        "slipstream_http_response_bytes",
        "slipstream_http_sendfile_bytes",
        "slipstream_http_requests_in_flight",
        "slipstream_open_connections",
        "slipstream_open_websockets",
        "slipstream_digest_cache_hits",
        "slipstream_digest_cache_misses",
        "slipstream_digest_hash_duration_seconds",
        "slipstream_download_jobs",
        "slipstream_download_jobs_finished",
        "slipstream_download_fetched_bytes",
        "slipstream_zip_streams_active",
        "slipstream_upstream_errors",
    }
    for family in families:
        assert family.name.startswith("slipstream_"), family.name
        assert family.documentation, family.name
        if family.type == "counter":  # exposed as NAME_total
            assert all(s.name.startswith(family.name) for s in family.samples)


def test_a_reply_counts_once_with_its_route_status_and_bytes() -> None:
    metrics = Metrics()
    metrics.request_done("/api/download", 200, 1000, 800)
    metrics.request_done("/api/download", 200, 24, 0)
    metrics.request_done("/api/download", 404, 50, 0)
    metrics.request_done("/healthz", 200, 0, 0)
    samples = parse(text(metrics))
    requests = "slipstream_http_requests_total"
    assert value(samples, requests, route="/api/download", status="200") == 2
    assert value(samples, requests, route="/api/download", status="404") == 1
    assert value(samples, requests, route="/healthz", status="200") == 1
    response = "slipstream_http_response_bytes_total"
    assert value(samples, response, route="/api/download") == 1074
    assert value(samples, "slipstream_http_sendfile_bytes_total", route="/api/download") == 800


def test_each_metrics_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()  # a second would raise "Duplicated timeseries" if shared
    one.request_done("/healthz", 200, 15, 0)
    one.open_connections.inc()
    assert value(parse(text(one)), "slipstream_open_connections") == 1
    assert value(parse(text(two)), "slipstream_open_connections") == 0
    assert (
        value(parse(text(two)), "slipstream_http_requests_total", route="/healthz", status="200")
        == 0
    )


def test_openmetrics_when_the_scraper_asks_for_it() -> None:
    metrics = Metrics()
    body, content_type = metrics.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    _, plain = metrics.exposition(None)
    assert plain.startswith("text/plain; version=0.0.4")


def test_jobs_move_between_states_and_finish() -> None:
    metrics = Metrics()
    jobs = metrics.jobs
    jobs.moved(None, "queued")
    jobs.moved("queued", "starting")
    jobs.moved(None, "queued")
    jobs.moved("starting", "downloading")
    jobs.fetched(1234)
    samples = parse(text(metrics))
    assert value(samples, "slipstream_download_jobs", state="queued") == 1
    assert value(samples, "slipstream_download_jobs", state="downloading") == 1
    jobs.moved("downloading", "failed")
    jobs.finished("failed", "NETWORK_ERROR")
    jobs.moved("queued", None)  # shutdown: still active in the store, no longer here
    jobs.finished("failed", "CHECKSUM_MISMATCH")  # not the upstream's fault
    samples = parse(text(metrics))
    for state in ("queued", "starting", "downloading"):
        assert value(samples, "slipstream_download_jobs", state=state) == 0
    assert value(samples, "slipstream_download_jobs_finished_total", state="failed") == 2
    assert value(samples, "slipstream_download_fetched_bytes_total") == 1234
    assert value(samples, "slipstream_upstream_errors_total", service="download") == 1


def test_digest_counters() -> None:
    metrics = Metrics()
    metrics.digests.hit()
    metrics.digests.miss()
    metrics.digests.hashed(0.25)
    samples = parse(text(metrics))
    assert value(samples, "slipstream_digest_cache_hits_total") == 1
    assert value(samples, "slipstream_digest_cache_misses_total") == 1
    assert value(samples, "slipstream_digest_hash_duration_seconds_count") == 1
    assert value(samples, "slipstream_digest_hash_duration_seconds_sum") == 0.25
    assert value(samples, "slipstream_digest_hash_duration_seconds_bucket", le="0.5") == 1
    assert value(samples, "slipstream_digest_hash_duration_seconds_bucket", le="0.1") == 0


def test_a_metrics_dir_needs_the_multiprocess_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    problem = multiprocess_problem(tmp_path)
    assert problem is not None and "PROMETHEUS_MULTIPROC_DIR" in problem
    config = Config(root=tmp_path / "root", metrics=True, metrics_dir=tmp_path)
    with pytest.raises(ConfigError, match="metrics dir needs PROMETHEUS_MULTIPROC_DIR"):
        config.validate()
    Config(root=tmp_path / "root", metrics_dir=tmp_path).validate()  # metrics off: unused


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:9464", ("::1", 9464)),
    ],
)
def test_metrics_bind_takes_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert host_port(text) == expected


@pytest.mark.parametrize(
    "text", ["9464", ":9464", "127.0.0.1:", "127.0.0.1:70000", "::1:9464", "h:+1"]
)
def test_metrics_bind_refuses_what_is_not_host_and_port(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        host_port(text)


def test_flags_fill_the_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    args = build_parser().parse_args(["serve"])
    config = config_from_args(args)
    assert (config.metrics, config.metrics_bind, config.metrics_dir) == (False, None, None)
    assert not config.metrics_enabled
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    args = build_parser().parse_args(["serve", "--metrics", "--metrics-bind", "127.0.0.1:9464"])
    config = config_from_args(args)
    assert config.metrics and config.metrics_bind == ("127.0.0.1", 9464)
    assert config.metrics_dir == tmp_path


async def test_the_router_names_the_route_pattern_never_the_raw_path() -> None:
    router = Router()

    async def ok(request: Request) -> Response:
        return Response(200)

    router.add("/exact", ok)
    router.add_prefix("/files/", ok)
    router.add_query_route(["download", "downloads"], ok)
    seen = []
    for target in ("/exact", "/files/a/b.txt", "/files/c", "/any/dir?downloads=", "/nope"):
        request = request_of(b"GET", target.encode(), {}, "test")
        with contextlib.suppress(NotFound):
            await router(request)
        seen.append(request.route)
    assert seen == ["/exact", "/files/*", "/files/*", "/{dir}?download|downloads", "none"]
