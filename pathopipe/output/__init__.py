"""The run output folder: run.json, the manifest, and the lock against concurrent runs."""

from pathopipe.errors import RunLockedError
from pathopipe.output.lock import LeaseLock, RunLock, lock_holder, run_lock
from pathopipe.output.manifest import (
    MANIFEST_COLUMNS,
    SlideRecord,
    read_manifest,
    read_manifest_records,
    write_manifest,
)
from pathopipe.output.runinfo import environment_info, write_run_json
from pathopipe.output.status import RunStatus, run_status

__all__ = [
    "MANIFEST_COLUMNS",
    "LeaseLock",
    "RunLock",
    "RunLockedError",
    "RunStatus",
    "SlideRecord",
    "environment_info",
    "lock_holder",
    "read_manifest",
    "read_manifest_records",
    "run_lock",
    "run_status",
    "write_manifest",
    "write_run_json",
]
