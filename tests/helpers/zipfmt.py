"""Values shared by the tests of the ``zipfmt`` twins (``tests/ext/test_zipfmt*.py``)."""

from __future__ import annotations

U16 = 0xFFFF
U32 = 0xFFFFFFFF
U64 = 0xFFFFFFFFFFFFFFFF
MTIME = 1700000001  # 2023-11-14 22:13:21 UTC; odd, so the DOS time (2 s steps) differs
TOOLS_HINT = "`make test` installs it (Debian packages unzip p7zip-full libarchive-tools)"
