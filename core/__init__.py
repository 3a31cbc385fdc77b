"""slipstream: serve files fast and resumably, and prove every byte with a checksum.

The embeddable core: sans-IO range/conditional logic, segment maps, storage layers
and the Trio body writer.  The HTTP server on top of it is ``slipstream.server``.
"""

__version__ = "0.1.0"
