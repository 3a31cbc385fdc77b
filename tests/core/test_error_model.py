"""One error model: every error a client may see is a ``SlipstreamError`` value with a
``code``, an HTTP ``status`` and a ``message``, also those the seeds name by key."""

from __future__ import annotations

import pytest

from slipstream.errors import FileNotFound, InternalError, SlipstreamError
from slipstream.fetch import FetchError
from slipstream.jobs.settings import JobRefused
from slipstream.zip.errors import ZIP_ERRORS, ZipError
from slipstream.zip.remote import UpstreamRefused


@pytest.mark.parametrize(
    ("error", "code", "status", "message"),
    [
        (ZipError("DOWNLOAD_EXPIRED"), "DOWNLOAD_EXPIRED", 404, ZIP_ERRORS["DOWNLOAD_EXPIRED"][1]),
        (FetchError("NETWORK_ERROR", "connection refused"), "NETWORK_ERROR", 502, None),
        (JobRefused("INVALID_SHA256", 400, "sha256 must be hex"), "INVALID_SHA256", 400, None),
        (FileNotFound("a.txt"), "file_not_found", 404, "file not found at a.txt"),
        (InternalError(), "internal_error", 500, "internal server error"),
    ],
)
def test_every_error_is_a_value_with_code_status_and_message(
    error: SlipstreamError, code: str, status: int, message: str | None
) -> None:
    assert isinstance(error, SlipstreamError)
    assert (error.code, error.status) == (code, status)
    assert error.message == (message if message is not None else str(error.args[0]))


def test_the_seeds_keys_are_the_codes() -> None:
    assert ZipError("UNKNOWN").key == ZipError("UNKNOWN").code == "UNKNOWN"
    assert FetchError("DOWNLOAD_TIMEOUT", "slow").key == "DOWNLOAD_TIMEOUT"
    assert JobRefused("DOMAIN_BLOCKED", 403, "blocked").key == "DOMAIN_BLOCKED"


def test_a_per_instance_code_leaves_the_class_alone() -> None:
    refused = JobRefused("STORAGE_ERROR", 500, "cannot use that directory")
    assert refused.code == "STORAGE_ERROR"
    assert SlipstreamError.code == "internal_error"
    assert SlipstreamError().code == "internal_error"


def test_an_upstream_refusal_keeps_the_status_a_failed_fetch_answers() -> None:
    refused = UpstreamRefused(404)
    assert isinstance(refused, FetchError)
    assert refused.status == 502 and refused.upstream_status == 404
    assert refused.final and not UpstreamRefused(429).final
