"""Remote-download jobs: fetch a URL into a directory of the root, resumably, with every
checksum computed on the way.

``runner`` (:class:`Jobs`: queueing, running, cancelling, resuming after a restart,
progress events), ``settings`` (:class:`JobSettings` and the checks of a start request,
:class:`JobRefused`), ``transfer`` (one job's bytes: the request, resuming, the write and
hash pipeline, verifying and publishing), ``store`` (:class:`JobStore`: the job rows in
SQLite) and ``files`` (the target directories, the ``.part`` file a job streams into,
publishing it without overwriting).
"""

from .runner import Jobs
from .settings import JobRefused, JobSettings
from .store import JobRecord, JobStore

__all__ = ["JobRecord", "JobRefused", "JobSettings", "JobStore", "Jobs"]
