"""Remote-download jobs: fetch a URL into a directory of the root, resumably, with every
checksum computed on the way.

``runner`` (:class:`Jobs`: queueing, running, cancelling, resuming after a restart,
progress events), ``store`` (:class:`JobStore`: the job rows in SQLite) and ``files``
(the target directories, the ``.part`` file a job streams into, publishing it without
overwriting).
"""

from .runner import JobRefused, Jobs, JobSettings
from .store import JobRecord, JobStore

__all__ = ["JobRecord", "JobRefused", "JobSettings", "JobStore", "Jobs"]
