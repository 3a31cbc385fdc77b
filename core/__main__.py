"""``python -m slipstream``: the same command as the ``slipstream`` console script.

(The one place the core names the server: an entry point, not a dependency.)
"""

import sys

from slipstream.server.cli import entry

sys.exit(entry())
