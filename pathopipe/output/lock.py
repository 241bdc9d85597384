"""A lock that refuses a second run on the same output folder.

``OUT/.pathopipe.lock`` is held with ``flock`` for the duration of a run, and holds the owner's
host and pid. The kernel releases the lock when its process dies, however it dies, so a lock
left by a killed run is taken over without any guessing; the file stays, its owner is cleared
on a clean exit (an owner found in a free lock means the last run was interrupted).

Object storage has no ``flock``: there the lock is an object holding its owner and a lease
that the run renews every third of its lease (``storage.lock_lease_s``, default 60 s). A run finding
an unexpired lease refuses to start, unless the owner is a dead process on its own host; an
expired lease (its run was killed or lost) is taken over. After writing its claim, a run reads
it back a moment later and gives up if another claim replaced it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from pathopipe import fileio
from pathopipe.errors import RunLockedError, StoreError
from pathopipe.output.layout import RunLayout

logger = logging.getLogger(__name__)


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


def lock_holder(out: str | Path, options: fileio.Options = None) -> dict[str, Any] | None:
    """The owner of the run holding ``out`` now, or None when no run holds it."""
    if fileio.is_url(out):
        owner = _read_lease(RunLayout(out).lock, options)
        return owner if owner and _lease_live(owner) else None
    path = Path(RunLayout(out).lock)
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


def _read_lease(url: str, options: fileio.Options) -> dict[str, Any] | None:
    try:
        data = fileio.read_bytes(url, options)
    except FileNotFoundError:
        return None
    try:
        return json.loads(data) if data.strip() else None
    except ValueError:
        return None


def _lease_live(owner: dict[str, Any]) -> bool:
    """An unexpired lease whose owner is not known to be dead."""
    if float(owner.get("expires", 0)) < time.time():
        return False
    same_host = owner.get("host") == socket.gethostname()
    return not (same_host and isinstance(owner.get("pid"), int) and not process_alive(owner["pid"]))


class LeaseLock:
    """The run lock on object storage: an object holding its owner and a renewed lease."""

    def __init__(self, out: str, options: fileio.Options = None, *, lease_seconds: float = 60.0) -> None:
        self.url, self.options = RunLayout(out).lock, options
        self.lease = lease_seconds
        self.token = uuid.uuid4().hex
        self.previous_owner: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._renewer is not None

    def _claim(self) -> None:
        me = {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
              "since": self._since, "expires": time.time() + self.lease}  # fmt: skip
        fileio.write_bytes(self.url, json.dumps(me).encode(), self.options)

    def _refuse(self, owner: dict[str, Any]) -> RunLockedError:
        left = float(owner.get("expires", 0)) - time.time()
        return RunLockedError(
            f"{self.url} is held by another pathopipe run (pid {owner.get('pid')} on {owner.get('host')}, "
            f"lease renewed while it runs, {left:.0f} s left); wait for it to finish, or, if that run "
            "is gone, for its lease to expire"
        )

    def acquire(self) -> None:
        owner = _read_lease(self.url, self.options)
        if owner and _lease_live(owner):
            raise self._refuse(owner)
        self.previous_owner = owner
        if owner:
            logger.warning("taking over %s from an interrupted run (pid %s on %s)",
                           self.url, owner.get("pid"), owner.get("host"))  # fmt: skip
        self._since = time.time()
        self._claim()
        time.sleep(min(1.0, self.lease / 10))  # a rival claiming at the same moment shows up here
        now = _read_lease(self.url, self.options)
        if not now or now.get("token") != self.token:
            raise self._refuse(now or {})
        self._renewer = threading.Thread(target=self._renew, name="pathopipe-lease", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                self._claim()
            except Exception as err:  # noqa: BLE001 (keep renewing; the next try may succeed)
                logger.warning("could not renew the run lock %s: %s", self.url, err)

    def release(self) -> None:
        if self._renewer is not None:
            self._stop.set()
            self._renewer.join()
            self._renewer = None
            with contextlib.suppress(Exception):
                fileio.write_bytes(self.url, b"", self.options)  # a clean exit: no owner left behind

    def __enter__(self) -> LeaseLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def run_lock(
    out: str | Path, options: fileio.Options = None, *, lease_seconds: float = 60.0
) -> RunLock | LeaseLock:
    """The lock for ``out``: ``flock`` on a local folder, a lease of ``lease_seconds`` on object
    storage (``storage.lock_lease_s``)."""
    return LeaseLock(str(out), options, lease_seconds=lease_seconds) if fileio.is_url(out) else RunLock(out)


class RunLock:
    """Context manager holding ``OUT/.pathopipe.lock`` for the duration of a run."""

    def __init__(self, out: str | Path) -> None:
        self.path = Path(RunLayout(out).lock)
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
