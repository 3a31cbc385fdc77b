"""The HTTP/WebSocket application on top of the slipstream core.

``await nursery.start(slipstream.server.serve, config)`` runs a server and returns
its port; :class:`Server` gives control over graceful shutdown and, while it runs, its
:class:`Services`; :func:`open_app` builds those services without a server.
"""

from typing import TYPE_CHECKING

from slipstream.lazyexports import lazy_exports

if TYPE_CHECKING:
    from .app import Server, serve
    from .config import Config, Limits
    from .services import App, Services, open_app

__all__ = ["App", "Config", "Limits", "Server", "Services", "open_app", "serve"]

# Imported on first use, so that a command that needs none of it (``slipstream digest``,
# ``slipstream state``) does not pay for importing the server and Trio at start.
__getattr__ = lazy_exports(
    __name__,
    {
        "App": "services",
        "Config": "config",
        "Limits": "config",
        "Server": "app",
        "Services": "services",
        "open_app": "services",
        "serve": "app",
    },
)
