"""A lock file that refuses a second run on the same output folder.

The lock records host and pid; a lock whose process no longer exists on this host is stale
(left by a killed run) and is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from pathopipe.errors import PathopipeError

LOCK_NAME = ".pathopipe.lock"


class RunLockedError(PathopipeError, RuntimeError):
    """Another run holds the output folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """Context manager holding ``OUT/.pathopipe.lock`` for the duration of a run."""

    def __init__(self, out: str | Path) -> None:
        self.path = Path(out) / LOCK_NAME
        self.held = False

    def _owner(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                stale = (
                    owner is not None and owner.get("host") == me["host"] and not _alive(int(owner["pid"]))
                )
                if stale:
                    self.path.unlink(missing_ok=True)
                    continue
                who = f"pid {owner.get('pid')} on {owner.get('host')}" if owner else "an unknown process"
                raise RunLockedError(
                    f"{self.path.parent} is in use by another pathopipe run ({who}); wait for it to "
                    f"finish, or remove {self.path} if that run is gone"
                ) from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return
        raise RunLockedError(f"could not take the lock {self.path}")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
