"""The HTTP/WebSocket application on top of the slipstream core.

``await nursery.start(slipstream.server.serve, config)`` runs a server and returns
its port; :class:`Server` gives control over graceful shutdown and, while it runs, its
:class:`Services`; :func:`open_app` builds those services without a server.
"""

from .app import Server, serve
from .config import Config, Limits
from .services import App, Services, open_app

__all__ = ["App", "Config", "Limits", "Server", "Services", "open_app", "serve"]
