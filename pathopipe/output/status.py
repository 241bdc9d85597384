"""``pathopipe status OUT``: what a run in progress or finished has done, from its files alone.

Reads ``OUT/run.json``, ``OUT/manifest.csv`` and the run lock; needs no cluster.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathopipe import fileio
from pathopipe.errors import ConfigError
from pathopipe.output.layout import RunLayout
from pathopipe.output.lock import lock_holder
from pathopipe.output.manifest import SlideRecord, read_manifest_records


@dataclass
class RunStatus:
    """A summary of one output folder."""

    out: str | Path
    state: str  # "running" | "finished" | "interrupted"
    slides: int  # slides the run was given
    counts: dict[str, int] = field(default_factory=dict)  # manifest status -> slides
    tiles: int = 0  # tiles of done and skipped slides
    bytes: int = 0
    started: float | None = None
    finished: float | None = None
    stages: list[str] = field(default_factory=list)
    owner: dict[str, Any] | None = None  # the lock holder, while running
    failed: list[SlideRecord] = field(default_factory=list)
    random_weights: list[str] = field(default_factory=list)  # models whose features are not the model's

    @property
    def elapsed(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "state": self.state,
            "slides": self.slides,
            "counts": self.counts,
            "tiles": self.tiles,
            "bytes": self.bytes,
            "started": self.started,
            "finished": self.finished,
            "elapsed_s": self.elapsed,
            "stages": self.stages,
            "lock_owner": self.owner,
            "failed": [{"slide_id": r.slide_id, "stage": r.stage, "error": r.error} for r in self.failed],
            "random_weights": self.random_weights,
        }


def run_status(out: str | Path, options: fileio.Options = None) -> RunStatus:
    """The state of the run in ``out`` (a folder or a URL): running (lock held by a live
    process, or an unexpired lease), finished, or interrupted (killed: a stale lock, or no end
    time); counts and totals from the manifest."""
    out = out if fileio.is_url(out) else Path(out)
    try:
        info = json.loads(fileio.read_bytes(RunLayout(out).run_json, options))
    except FileNotFoundError:
        raise ConfigError(
            f"{out} holds no pathopipe run (no {RunLayout.RUN_JSON}); give the --out folder of a run"
        ) from None
    records = read_manifest_records(out, options)
    owner = lock_holder(out, options)
    if owner is not None:
        state = "running"
    elif info.get("finished") is not None and not _left_owner(out, options):
        state = "finished"
    else:
        state = "interrupted"
    counts = Counter(r.status for r in records)
    complete = [r for r in records if r.status in ("done", "skipped")]
    return RunStatus(
        out=out,
        state=state,
        slides=int(info.get("slides", len(records))),
        counts={str(status): n for status, n in counts.items()},
        tiles=sum(r.n_tiles or 0 for r in complete),
        bytes=sum(r.bytes or 0 for r in complete),
        started=info.get("started"),
        finished=info.get("finished") if state == "finished" else None,
        stages=list(info.get("stages", [])),
        owner=owner,
        failed=[r for r in records if r.status == "failed"],
        random_weights=random_weight_models(out, info, options),
    )


def random_weight_models(out: str | Path, info: dict[str, Any], options: fileio.Options) -> list[str]:
    """Models whose features in ``out`` were computed with random weights (asked for with
    ``--weights random``): from the run's configuration and each ``pathopipe extract``'s facts."""
    found: set[str] = set()
    features = info.get("config", {}).get("features", {})
    if features.get("weights") == "random":
        found |= {str(m) for m in features.get("models", [])}
    for name in fileio.list_names(out, options):
        if RunLayout.is_extraction_run_json(name):
            try:
                facts = json.loads(fileio.read_bytes(fileio.join(out, name), options))
            except (OSError, ValueError):
                continue
            for model, settings in zip(facts.get("models", []), facts.get("settings", []), strict=False):
                if settings.get("weights") == "random":
                    found.add(str(model.get("key")))
    return sorted(found - {"noop"})


def _left_owner(out: str | Path, options: fileio.Options) -> bool:
    """A free lock that still names an owner: that run was killed."""
    try:
        return bool(fileio.read_bytes(RunLayout(out).lock, options).strip())
    except OSError:
        return False
