"""slipstream: serve files fast and resumably, and prove every byte with a checksum.

The embeddable core: sans-IO HTTP semantics (``slipstream.http``), segment maps, storage
layers and the Trio body writer, plus the features built on them (``slipstream.zip``,
``slipstream.jobs``, ``slipstream.client``).  The HTTP server on top of it is
``slipstream.server``.
"""

__version__ = "0.1.0"
"""The version; pyproject.toml reads it from here (the one place it is written)."""
