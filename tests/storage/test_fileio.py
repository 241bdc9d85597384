"""Atomic writes keep the permissions a plain write would give."""

from __future__ import annotations

import os

from pathopipe import fileio


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)  # this test's process: set for the check, restored after
    try:
        path = tmp_path / "report" / "summary.json"
        fileio.write_bytes(path, b"{}")
        assert path.read_bytes() == b"{}" and path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
        path.chmod(0o640)
        fileio.write_bytes(path, b"{ }")  # a replaced file keeps its mode
        assert path.stat().st_mode & 0o777 == 0o640
        assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary left
    finally:
        os.umask(umask)
