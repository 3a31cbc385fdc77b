"""Errors as values: every error a client may see is a :class:`SlipstreamError`, with a
stable ``code``, an HTTP ``status`` and a ``message`` that is safe to show to clients.

Most documented errors are a class here (``FileNotFound``, ``PathNotAllowed``...).  The
seeds that name their errors by key build them from the key instead, with the same
three fields: the zip service's :class:`~slipstream.zip.errors.ZipError`, outbound
fetches' :class:`~slipstream.fetch.FetchError`, refused remote-download jobs'
:class:`~slipstream.jobs.settings.JobRefused`.

Library code raises them and never renders them: each API surface of the server has
one renderer that turns them into its replies (``{"error"}`` JSON, seed 004's
html/json/redirect, the drive API's ``{"code", "message"}``, seed 001's
``{"success": false, "error"}``, websocket statuses); see ``slipstream.server.errors``.
"""

from __future__ import annotations

from collections.abc import Iterable


class SlipstreamError(Exception):
    """Base of every error a client may see.  ``code`` is stable; ``status`` is HTTP."""

    code: str = "internal_error"
    status: int = 500
    default_message: str = "internal server error"

    def __init__(
        self, message: str | None = None, *, code: str | None = None, status: int | None = None
    ) -> None:
        self.message = message if message is not None else self.default_message
        if code is not None:  # errors named by a seed's key carry it per instance
            self.code = code
        if status is not None:
            self.status = status
        super().__init__(self.message)


# --- generic HTTP-level errors -------------------------------------------------------


class BadRequest(SlipstreamError):
    code, status, default_message = "bad_request", 400, "bad request"


class Unauthorized(SlipstreamError):
    code, status, default_message = "unauthorized", 401, "missing or invalid access token"


class Forbidden(SlipstreamError):
    code, status, default_message = "forbidden", 403, "forbidden"


class NotFound(SlipstreamError):
    code, status, default_message = "not_found", 404, "not found"


class MethodNotAllowed(SlipstreamError):
    """405; ``allowed`` (the methods the path does take) goes into the ``Allow`` header."""

    code, status, default_message = "method_not_allowed", 405, "method not allowed"

    def __init__(self, message: str | None = None, *, allowed: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.allowed = tuple(allowed)


class PreconditionFailed(SlipstreamError):
    code, status, default_message = "precondition_failed", 412, "precondition failed"


class PayloadTooLarge(SlipstreamError):
    code, status, default_message = "payload_too_large", 413, "request body too large"


class RangeNotSatisfiable(SlipstreamError):
    """416; ``size`` goes into ``Content-Range: bytes */SIZE``."""

    code, status, default_message = "range_not_satisfiable", 416, "range not satisfiable"

    def __init__(self, size: int, message: str | None = None) -> None:
        super().__init__(message)
        self.size = size


class HeaderTooLarge(SlipstreamError):
    code, status, default_message = (
        "header_too_large",
        431,
        "request header fields too large",
    )


class ServiceUnavailable(SlipstreamError):
    code, status, default_message = "service_unavailable", 503, "server is busy"


class StateUnavailable(ServiceUnavailable):
    """A store in the state dir cannot be used now (disk full, I/O error, a lock held
    too long); the request may succeed later, and the server recovers without a restart.
    The details are in the server's log, not in the reply."""

    code, default_message = (
        "STATE_UNAVAILABLE",
        "the server cannot record this now (its state storage failed); try again later",
    )


class InternalError(SlipstreamError):
    code, status, default_message = "internal_error", 500, "internal server error"


# --- seed 002: GET /api/download -----------------------------------------------------


class MissingFilePath(BadRequest):
    code = "missing_filepath"
    default_message = "provide a file path is required -> could not download file"


class PathNotAllowed(Forbidden):
    code, default_message = "path_not_allowed", "file path is not allowed"


class IsADirectory(Forbidden):
    code = "is_a_directory"

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} is a directory and not a file")


class FileNotReadable(Forbidden):
    code, default_message = "file_not_readable", "file is not readable"


class NotARegularFile(Forbidden):
    code, default_message = "not_a_regular_file", "file is not a regular file"


class FileNotFound(NotFound):
    code = "file_not_found"

    def __init__(self, path: str) -> None:
        super().__init__(f"file not found at {path}")


class FileEmpty(PreconditionFailed):
    code, default_message = "file_empty", "file is empty"


class FileSystemUnavailable(PreconditionFailed):
    code = "file_system_unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(f"failed to get file system: {detail}")


class FileTooLarge(PayloadTooLarge):
    code = "file_too_large"

    def __init__(self, max_size: int) -> None:
        super().__init__(f"file too large, max size is {_human_size(max_size)}")


def _human_size(size: int) -> str:
    """``52428800`` -> ``"50 MB"`` (the seed's wording uses binary megabytes)."""
    for unit, factor in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


# --- presigned URLs ------------------------------------------------------------------


class PresignTampered(Forbidden):
    """The signature is missing, malformed, or does not match the URL's parameters."""

    code, default_message = "signature_mismatch", "signature does not match"


class PresignExpired(Forbidden):
    """A correctly signed URL whose expiry time has passed (checked when a request starts)."""

    code, default_message = "url_expired", "URL expired"


class FileChangedSinceIssue(PreconditionFailed):
    """The file's strong ETag differs from the one signed into the URL."""

    code, default_message = "file_changed", "file changed since the URL was issued"


class InvalidResponseOverride(BadRequest):
    """A response override to sign is not a valid header value (control or non-ASCII chars)."""

    code, default_message = "invalid_response_override", "invalid response override"
