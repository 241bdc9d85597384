"""A lock that refuses a second run on the same output folder.

``OUT/.pathopipe.lock`` is held with ``flock`` for the duration of a run, and holds the owner's
host and pid. The kernel releases the lock when its process dies, however it dies, so a lock
left by a killed run is taken over without any guessing; the file stays, its owner is cleared
on a clean exit (an owner found in a free lock means the last run was interrupted).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from pathopipe.errors import PathopipeError, StoreError

LOCK_NAME = ".pathopipe.lock"
logger = logging.getLogger(__name__)


class RunLockedError(PathopipeError, RuntimeError):
    """Another run holds the output folder."""


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_owner(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, 4096)
    try:
        return json.loads(data) if data.strip() else None
    except ValueError:
        return None


def lock_holder(out: str | Path) -> dict[str, Any] | None:
    """The owner of the run holding ``out`` now, or None when no run holds it."""
    path = Path(out) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_owner(fd) or {"pid": None, "host": None}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class RunLock:
    """Context manager holding ``OUT/.pathopipe.lock`` for the duration of a run."""

    def __init__(self, out: str | Path) -> None:
        self.path = Path(out) / LOCK_NAME
        self._fd: int | None = None
        self.previous_owner: dict[str, Any] | None = None  # set when taking over a killed run's lock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by workers
        except OSError as err:  # read-only, full or missing file system: nothing has started
            raise StoreError(
                f"cannot write to the output folder {self.path.parent}: {err.strerror}; "
                "choose a writable --out (nothing was run)"
            ) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            who = f"pid {owner.get('pid')} on {owner.get('host')}" if owner else "another process"
            raise RunLockedError(
                f"{self.path.parent} is in use by another pathopipe run ({who}); wait for it to "
                "finish or stop it; a second run on the same output folder is refused"
            ) from None
        self.previous_owner = _read_owner(fd)
        if self.previous_owner:
            logger.warning(
                "taking over %s from an interrupted run (pid %s on %s)",
                self.path, self.previous_owner.get("pid"), self.previous_owner.get("host"),
            )  # fmt: skip
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)  # a clean exit: no owner left behind
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
