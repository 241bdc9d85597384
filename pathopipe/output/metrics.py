"""Per-task metrics: what every task of a run did, where, when and how long each step took.

Each task runs inside :class:`Measured`, which returns the task's result together with a
:class:`TaskMetrics` row (wall clock start/end, worker host and pid, peak RSS, and the step
timings, tiles and bytes the stage's result reports). The driver collects the rows and writes
``OUT/metrics.parquet``: one row per task, the raw material of the throughput report.
"""

from __future__ import annotations

import os
import resource
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

METRICS_NAME = "metrics.parquet"


@dataclass
class TaskMetrics:
    """One task: identity, placement, timing and work done."""

    slide_id: str
    stage: str  # "tiles" | "features"
    role: str  # "prepare" | "work" | "finish"
    start: float  # epoch seconds (worker clock)
    end: float
    host: str
    pid: int
    peak_rss_bytes: int  # of the worker process so far
    ok: bool = True
    tiles: int = 0
    bytes_written: int = 0
    device: str = "cpu"
    threads: int = 1  # cores the task keeps busy (torch threads for a CPU model)
    steps: dict[str, float] = field(default_factory=dict)  # step name -> seconds

    @property
    def seconds(self) -> float:
        return self.end - self.start


def _peak_rss() -> int:
    """This process's peak resident memory (bytes).

    Linux: ``VmHWM``, the high-water mark of this process's own memory. ``ru_maxrss`` is not
    used there: it survives fork and exec, so a worker spawned by a large parent reports the
    parent's size.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # kB on Linux, bytes on macOS


@dataclass(frozen=True)
class Measured:
    """A stage function wrapped to return ``(result, TaskMetrics)``; picklable when ``fn`` is."""

    fn: Callable[..., Any]
    stage: str
    role: str

    def __call__(self, *args: Any) -> tuple[Any, TaskMetrics]:
        start = time.time()
        result = self.fn(*args)
        end = time.time()
        slide_id = _slide_id(args)
        report = getattr(result, "metrics", None)
        extra = (
            report() if callable(report) else (result.get("metrics", {}) if isinstance(result, dict) else {})
        )
        metrics = TaskMetrics(
            slide_id=slide_id, stage=self.stage, role=self.role, start=start, end=end,
            host=socket.gethostname(), pid=os.getpid(), peak_rss_bytes=_peak_rss(),
            tiles=int(extra.get("tiles", 0)), bytes_written=int(extra.get("bytes_written", 0)),
            device=str(extra.get("device", "cpu")), threads=int(extra.get("threads", 1)),
            steps=dict(extra.get("steps", {})),
        )  # fmt: skip
        return result, metrics


def _slide_id(args: tuple[Any, ...]) -> str:
    first = args[0] if args else None
    job = getattr(first, "job", first)
    return str(getattr(job, "slide_id", ""))


METRICS_COLUMNS = [
    "run_id", "slide_id", "stage", "role", "start", "end", "seconds", "host", "pid", "worker",
    "peak_rss_bytes", "ok", "tiles", "bytes_written", "device", "threads",
]  # fmt: skip


def write_metrics(path: str | Path, rows: list[TaskMetrics], *, run_id: str) -> Path:
    """Write this run's rows, after the rows of earlier runs already in ``path`` (other run
    ids), as Parquet, atomically: fixed columns plus ``step_<name>`` (seconds) per step name."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    steps = sorted({name for row in rows for name in row.steps})
    columns: dict[str, list] = {name: [] for name in METRICS_COLUMNS}
    for name in steps:
        columns[f"step_{name}"] = []
    for row in rows:
        data = asdict(row) | {"run_id": run_id, "seconds": row.seconds, "worker": f"{row.host}:{row.pid}"}
        for name in METRICS_COLUMNS:
            columns[name].append(data[name])
        for name in steps:
            columns[f"step_{name}"].append(row.steps.get(name))
    table = pa.table(columns, schema=_schema(steps))
    if path.exists():
        earlier = pq.read_table(path)
        earlier = earlier.filter(pa.compute.not_equal(earlier["run_id"], run_id))
        if earlier.num_rows:
            table = pa.concat_tables([earlier, table], promote_options="default")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def _schema(steps: list[str]) -> Any:
    import pyarrow as pa

    types = {"start": pa.float64(), "end": pa.float64(), "seconds": pa.float64(), "pid": pa.int64(),
             "peak_rss_bytes": pa.int64(), "ok": pa.bool_(), "tiles": pa.int64(),
             "bytes_written": pa.int64(), "threads": pa.int64()}  # fmt: skip
    fields = [pa.field(name, types.get(name, pa.string())) for name in METRICS_COLUMNS]
    return pa.schema(fields + [pa.field(f"step_{name}", pa.float64()) for name in steps])


def read_metrics(path: str | Path) -> Any:
    """The metrics table as a pandas DataFrame."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pandas()
