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

from pathopipe import fileio
from pathopipe.fileio import io_counters


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
    # object storage (S3) traffic of the worker process during the task; exact with one thread
    # per worker, shared between the tasks running at the same time otherwise
    storage_requests: int = 0
    storage_bytes_read: int = 0
    storage_bytes_written: int = 0
    gpu_busy_seconds: float = 0.0  # CUDA: time the task's model calls kept the GPU busy
    gpu_peak_memory_bytes: int = 0  # CUDA: torch's peak allocation during the task
    # CPU work in helper threads beside the task's own (tile decoding overlapped with the model)
    background_core_seconds: float = 0.0
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
        io_before = io_counters()
        start = time.time()
        result = self.fn(*args)
        end = time.time()
        io = {k: v - io_before[k] for k, v in io_counters().items()}
        slide_id = _slide_id(args)
        report = getattr(result, "metrics", None)
        extra = (
            report() if callable(report) else (result.get("metrics", {}) if isinstance(result, dict) else {})
        )
        metrics = TaskMetrics(
            slide_id=slide_id,
            stage=self.stage,
            role=self.role,
            start=start,
            end=end,
            host=socket.gethostname(),
            pid=os.getpid(),
            peak_rss_bytes=_peak_rss(),
            tiles=int(extra.get("tiles", 0)),
            bytes_written=int(extra.get("bytes_written", 0)),
            device=str(extra.get("device", "cpu")),
            threads=int(extra.get("threads", 1)),
            storage_requests=io["requests"],
            storage_bytes_read=io["bytes_read"],
            storage_bytes_written=io["bytes_written"],
            steps=dict(extra.get("steps", {})),
            gpu_busy_seconds=float(extra.get("gpu_busy_seconds", 0.0)),
            gpu_peak_memory_bytes=int(extra.get("gpu_peak_memory_bytes", 0)),
            background_core_seconds=float(extra.get("background_core_seconds", 0.0)),
        )
        return result, metrics


PHASE_ROLES = ("startup", "shutdown")  # rows of a run's own phases (stage "run"), not tasks


def phase_rows(started: float, first_task: float, last_task: float, closed: float) -> list[TaskMetrics]:
    """The run's start-up (its start to the first task's start) and shutdown (the last task's
    end to the cluster closed) as metrics rows of stage ``run``, recorded by the driver."""
    host, pid = socket.gethostname(), os.getpid()
    spans = (("startup", started, first_task), ("shutdown", last_task, closed))
    return [TaskMetrics(slide_id="", stage="run", role=role, start=start, end=end, host=host, pid=pid,
                        peak_rss_bytes=_peak_rss()) for role, start, end in spans]  # fmt: skip


def _slide_id(args: tuple[Any, ...]) -> str:
    first = args[0] if args else None
    job = getattr(first, "job", first)
    return str(getattr(job, "slide_id", ""))


# counters added after the first runs: read as 0 from tables written before them
LATER_COLUMNS = (
    "storage_requests",
    "storage_bytes_read",
    "storage_bytes_written",
    "gpu_busy_seconds",
    "gpu_peak_memory_bytes",
    "background_core_seconds",
)
METRICS_COLUMNS = [
    "run_id",
    "slide_id",
    "stage",
    "role",
    "start",
    "end",
    "seconds",
    "host",
    "pid",
    "worker",
    "peak_rss_bytes",
    "ok",
    "tiles",
    "bytes_written",
    "device",
    "threads",
    *LATER_COLUMNS,
]


def write_metrics(
    path: str | Path, rows: list[TaskMetrics], *, run_id: str, options: fileio.Options = None
) -> str:
    """Write this run's rows, after the rows of earlier runs already in ``path`` (other run
    ids), as Parquet, atomically: fixed columns plus ``step_<name>`` (seconds) per step name."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    steps = sorted({name for row in rows for name in row.steps})
    columns: dict[str, list[Any]] = {name: [] for name in METRICS_COLUMNS}
    for name in steps:
        columns[f"step_{name}"] = []
    for row in rows:
        data = asdict(row) | {"run_id": run_id, "seconds": row.seconds, "worker": f"{row.host}:{row.pid}"}
        for name in METRICS_COLUMNS:
            columns[name].append(data[name])
        for name in steps:
            columns[f"step_{name}"].append(row.steps.get(name))
    table = pa.table(columns, schema=_schema(steps))
    try:
        earlier = pq.read_table(pa.BufferReader(fileio.read_bytes(path, options)))
    except FileNotFoundError:
        earlier = None
    if earlier is not None:
        earlier = earlier.filter(pa.compute.not_equal(earlier["run_id"], run_id))
        if earlier.num_rows:
            table = pa.concat_tables([earlier, table], promote_options="default")
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    fileio.write_bytes(path, sink.getvalue().to_pybytes(), options)
    return str(path)


def warm_parquet() -> None:
    """Import pyarrow and write an empty table to memory: its first Parquet write is slow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": pa.array([], pa.int64())}), pa.BufferOutputStream())


def _schema(steps: list[str]) -> Any:
    import pyarrow as pa

    types = {
        "start": pa.float64(),
        "end": pa.float64(),
        "seconds": pa.float64(),
        "pid": pa.int64(),
        "peak_rss_bytes": pa.int64(),
        "ok": pa.bool_(),
        "tiles": pa.int64(),
        "bytes_written": pa.int64(),
        "threads": pa.int64(),
        "storage_requests": pa.int64(),
        "storage_bytes_read": pa.int64(),
        "storage_bytes_written": pa.int64(),
        "gpu_busy_seconds": pa.float64(),
        "gpu_peak_memory_bytes": pa.int64(),
        "background_core_seconds": pa.float64(),
    }
    fields = [pa.field(name, types.get(name, pa.string())) for name in METRICS_COLUMNS]
    return pa.schema(fields + [pa.field(f"step_{name}", pa.float64()) for name in steps])


def read_metrics(path: str | Path, options: fileio.Options = None, *, phases: bool = False) -> Any:
    """The task rows of the metrics table as a pandas DataFrame (columns added since a run wrote
    it are 0); with ``phases``, the runs' start-up and shutdown rows (stage ``run``) instead."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = pq.read_table(pa.BufferReader(fileio.read_bytes(path, options))).to_pandas()
    for name in LATER_COLUMNS:
        if name not in frame:
            frame[name] = 0
    is_phase = frame["role"].isin(PHASE_ROLES)
    return frame[is_phase if phases else ~is_phase].reset_index(drop=True)


def task_core_seconds(rows: Any, on_gpu: bool) -> Any:
    """CPU core-seconds of each task (a metrics frame of one stage): on CPU its wall time x the
    cores it keeps busy, beside a GPU its wall time outside the model calls; plus the work of its
    helper threads (``background_core_seconds``)."""
    own = (
        (rows["seconds"] - rows["gpu_busy_seconds"]).clip(lower=0.0)
        if on_gpu
        else rows["seconds"] * rows["threads"]
    )
    return own + rows["background_core_seconds"].fillna(0.0)


def task_gpu_seconds(rows: Any, on_gpu: bool) -> Any:
    """GPU-seconds of each task: its wall time when the stage runs on a GPU (the task holds it)."""
    return rows["seconds"] if on_gpu else rows["seconds"] * 0.0


def model_build_seconds(rows: Any) -> Any:
    """Seconds each task spent building models (``step_model_build``; 0 where none)."""
    return rows["step_model_build"].fillna(0.0) if "step_model_build" in rows else rows["seconds"] * 0.0
