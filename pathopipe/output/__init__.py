"""The run output folder: run.json, the manifest, and the lock against concurrent runs."""

from pathopipe.output.lock import RunLock, RunLockedError
from pathopipe.output.manifest import (
    MANIFEST_COLUMNS,
    SlideRecord,
    read_manifest,
    read_manifest_records,
    write_manifest,
)
from pathopipe.output.runinfo import environment_info, write_run_json

__all__ = [
    "MANIFEST_COLUMNS",
    "RunLock",
    "RunLockedError",
    "SlideRecord",
    "environment_info",
    "read_manifest",
    "read_manifest_records",
    "write_manifest",
    "write_run_json",
]
