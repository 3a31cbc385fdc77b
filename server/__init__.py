"""The HTTP/WebSocket application on top of the slipstream core.

``await nursery.start(slipstream.server.serve, config)`` runs a server and returns
its port; :class:`Server` gives control over graceful shutdown.
"""

from .app import App, Server, serve
from .config import Config, Limits

__all__ = ["App", "Config", "Limits", "Server", "serve"]
