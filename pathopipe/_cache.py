"""pathopipe's cache of facts that are slow to find and cheap to keep (resolved model specs,
weights files' sha256): small JSON files in ``$PATHOPIPE_CACHE``, else
``$XDG_CACHE_HOME/pathopipe`` (``~/.cache/pathopipe``). A missing, damaged or read-only cache
only means finding the fact again."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    """The folder pathopipe keeps its cache files in (not created here)."""
    home = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(os.environ.get("PATHOPIPE_CACHE") or os.path.join(home, "pathopipe"))


def _read(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
        return found if isinstance(found, dict) else {}
    except (OSError, ValueError):  # none yet, or damaged
        return {}


def remembered(name: str, key: str) -> Any | None:
    """What :func:`remember` kept under ``key`` in the cache file ``name``, or None."""
    return _read(cache_root() / name).get(key)


def remember(name: str, key: str, value: Any) -> None:
    """Keep ``value`` (JSON) under ``key`` in the cache file ``name``; written atomically,
    silently skipped where the cache cannot be written."""
    path = cache_root() / name
    known = _read(path)
    known[key] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps(known, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(partial, path)
    except (OSError, ValueError):  # a read-only home: found again next time
        pass
