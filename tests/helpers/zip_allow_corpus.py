"""Spellings of URIs that try to walk out of a zip allow-list prefix, with their outcomes."""

from __future__ import annotations

REFUSED = "refused"
INVALID = "invalid"
EXACT_PUB = "exact /pub"
"""``{o}/pub`` itself: admitted by the prefix ``/pub``, refused by ``/pub/``."""

#: (spelling, outcome).  ``{o}`` is ``http://127.0.0.1:PORT``, ``{p}`` the port.
CORPUS: list[tuple[str, str]] = [
    # dot segments, raw and percent-encoded: normalised, then judged
    ("{o}/pub/../priv/secret.txt", REFUSED),
    ("{o}/pub/./../priv/secret.txt", REFUSED),
    ("{o}/pub/%2e%2e/priv/secret.txt", REFUSED),
    ("{o}/pub/%2E%2e/priv/secret.txt", REFUSED),
    ("{o}/pub/.%2e/priv/secret.txt", REFUSED),
    ("{o}/pub/%2e./priv/secret.txt", REFUSED),
    ("{o}/pub/../public/x.txt", REFUSED),
    ("{o}/pub/../pub/file.txt", "/pub/file.txt"),
    ("{o}/pub/./file.txt", "/pub/file.txt"),
    ("{o}/pub/%2e/file.txt", "/pub/file.txt"),
    ("{o}/pub/a/../file.txt", "/pub/file.txt"),
    ("{o}/pub/a/%2e%2e/file.txt", "/pub/file.txt"),
    ("{o}/pub/a/b/.%2E/../file.txt", "/pub/file.txt"),
    ("{o}/pub/file.txt/..", "/pub/"),
    # encoded slashes and backslashes that could still form a dot segment
    ("{o}/pub/..%2fpriv/secret.txt", REFUSED),
    ("{o}/pub/..%2Fpriv/secret.txt", REFUSED),
    ("{o}/pub/%2f..%2fpriv/secret.txt", REFUSED),
    ("{o}/pub%2f..%2fpriv/secret.txt", REFUSED),
    ("{o}/pub/..%5cpriv/secret.txt", REFUSED),
    ("{o}/pub/%5c..%5cpriv%5csecret.txt", REFUSED),
    ("{o}/pub/a%2Fb.txt", "/pub/a%2Fb.txt"),
    ("{o}/pub\\..\\priv\\secret.txt", INVALID),
    ("{o}/pub/..\\priv/secret.txt", INVALID),
    # path parameters (Tomcat), double and triple encoding, IIS %u, nested escapes
    ("{o}/pub/..;/priv/secret.txt", REFUSED),
    ("{o}/pub/..;x=1/priv/secret.txt", REFUSED),
    ("{o}/pub/%2e%2e;/priv/secret.txt", REFUSED),
    ("{o}/pub/%252e%252e/priv/secret.txt", REFUSED),
    ("{o}/pub/%25252e%25252e/priv/secret.txt", REFUSED),
    ("{o}/pub/%252e%252e%252fpriv/secret.txt", REFUSED),
    ("{o}/pub/%%32%65%%32%65/priv/secret.txt", REFUSED),
    ("{o}/pub/%u002e%u002e/priv/secret.txt", REFUSED),
    # overlong UTF-8 and Unicode look-alikes
    ("{o}/pub/%c0%ae%c0%ae/priv/secret.txt", REFUSED),
    ("{o}/pub/%C0%AE%C0%AE%C0%AFpriv/secret.txt", REFUSED),
    ("{o}/pub/%e0%80%ae%e0%80%ae/priv/secret.txt", REFUSED),
    ("{o}/pub/\uff0e\uff0e/priv/secret.txt", REFUSED),  # full-width dots
    ("{o}/pub/%ef%bc%8e%ef%bc%8e/priv/secret.txt", REFUSED),
    ("{o}/pub/\u2025/priv/secret.txt", REFUSED),  # two dot leader
    ("{o}/pub/\uff0e\uff0e\uff0fpriv/secret.txt", REFUSED),  # and a full-width solidus
    # dots and spaces a Windows upstream trims, encoded controls
    ("{o}/pub/.../priv/secret.txt", REFUSED),
    ("{o}/pub/..%20/priv/secret.txt", REFUSED),
    ("{o}/pub/..%00/priv/secret.txt", REFUSED),
    ("{o}/pub/file.txt%00.jpg", REFUSED),
    # segment boundary and case
    ("{o}/public/x.txt", REFUSED),
    ("{o}/pub", EXACT_PUB),
    ("{o}/PUB/file.txt", REFUSED),
    ("{o}/p%75b/file.txt", "/pub/file.txt"),
    ("{o}/%70%75%62/file.txt", "/pub/file.txt"),
    ("{o}//pub/file.txt", REFUSED),
    ("{o}/pub//file.txt", "/pub//file.txt"),
    # scheme, host and port spellings
    ("HTTP://127.0.0.1:{p}/pub/file.txt", "/pub/file.txt"),
    ("hTtP://127.0.0.1.:{p}/pub/file.txt", "/pub/file.txt"),  # trailing-dot host
    ("{o}/pub/file.txt?", "/pub/file.txt"),
    ("http://127.0.0.1:80/pub/file.txt", REFUSED),
    ("https://127.0.0.1:{p}/pub/file.txt", REFUSED),
    ("http://localhost:{p}/pub/file.txt", REFUSED),
    ("http://127.1:{p}/pub/file.txt", REFUSED),
    ("http://2130706433:{p}/pub/file.txt", REFUSED),
    ("http://[::ffff:127.0.0.1]:{p}/pub/file.txt", REFUSED),
    ("http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54:{p}/pub/file.txt", REFUSED),
    # userinfo, fragments and queries
    ("http://user@127.0.0.1:{p}/pub/file.txt", REFUSED),
    ("http://127.0.0.1:{p}@evil.example/pub/file.txt", REFUSED),
    ("http://evil.example#@127.0.0.1:{p}/pub/file.txt", REFUSED),
    ("{o}/pub/file.txt#/../../priv/secret.txt", "/pub/file.txt"),
    ("{o}/pub/file.txt?x=../../priv/secret.txt", "/pub/file.txt?x=../../priv/secret.txt"),
    ("{o}/pub/?x=../", "/pub/?x=../"),
    ("{o}?/pub/file.txt", REFUSED),
    ("{o}/priv/secret.txt?/pub/file.txt", REFUSED),
    ("{o}/priv/secret.txt#/pub/file.txt", REFUSED),
    # tabs, newlines and other whitespace inside the URL
    ("{o}/pub/..\t/priv/secret.txt", INVALID),
    ("{o}/pu\nb/../priv/secret.txt", INVALID),
    ("{o}/pub/\r\n../priv/secret.txt", INVALID),
    ("{o}/pub/.. /priv/secret.txt", INVALID),
]
