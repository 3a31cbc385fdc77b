"""The resuming, verifying Trio client of slipstream's websocket protocol.

``session`` (:class:`SlipstreamClient`: the websocket session, type-7 tickets and the
HTTP download that resumes ``DEST.part`` and checks the SHA-256; :func:`download_file`),
``errors`` (one exception class per protocol status and close code, each printable as
one line), ``replies`` (checking the server's replies) and ``files`` (the ``.part`` and
``.part.etag`` files a download resumes from).
"""

from .errors import (
    ClientError,
    ConnectError,
    DownloadFailed,
    FileChecksumMismatch,
    FileInvalidResumeOffset,
    FileNotFound,
    InternalServerError,
    InvalidReply,
    InvalidRequestBody,
    NotAuthorized,
    NotInitialized,
    ProtocolError,
    RateLimited,
    RequestTimeout,
    ServerClosedConnection,
    UnsupportedData,
)
from .files import etag_path_for, part_path_for
from .session import DEFAULT_TIMEOUT, DownloadTicket, SlipstreamClient, download_file

__all__ = [
    "DEFAULT_TIMEOUT",
    "ClientError",
    "ConnectError",
    "DownloadFailed",
    "DownloadTicket",
    "FileChecksumMismatch",
    "FileInvalidResumeOffset",
    "FileNotFound",
    "InternalServerError",
    "InvalidReply",
    "InvalidRequestBody",
    "NotAuthorized",
    "NotInitialized",
    "ProtocolError",
    "RateLimited",
    "RequestTimeout",
    "ServerClosedConnection",
    "SlipstreamClient",
    "UnsupportedData",
    "download_file",
    "etag_path_for",
    "part_path_for",
]
