"""The run folder: the name of every file and folder of an output (schema version 1), in one place.

::

    OUT/
      run.json  manifest.csv  metrics.parquet  .pathopipe.lock  bench.json (pathopipe bench)
      features-<key>[+<key>].csv  extract-<key>[+<key>].json   (pathopipe extract)
      slides/<slide_id>.zarr      one store per slide (names inside: pathopipe.store.layout)
      cohort.zarr/                pathopipe pack
      report/  report.html report.md summary.json report.pdf dask-performance.html qc/
               cost_curve.csv hardware_curve.csv failures.csv tiles_per_slide.csv workers.csv

``OUT`` is a local folder or a URL (``s3://bucket/run``); paths are joined the way
:func:`pathopipe.fileio.join` joins them, so every path here works for both.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from pathopipe import fileio

__all__ = ["RunLayout"]


@dataclass(frozen=True)
class RunLayout:
    """Where everything of one run lives under its output folder ``root``."""

    root: str

    MANIFEST: ClassVar[str] = "manifest.csv"
    RUN_JSON: ClassVar[str] = "run.json"
    METRICS: ClassVar[str] = "metrics.parquet"
    LOCK: ClassVar[str] = ".pathopipe.lock"
    BENCH: ClassVar[str] = "bench.json"
    SLIDES: ClassVar[str] = "slides"
    STORE_SUFFIX: ClassVar[str] = ".zarr"
    COHORT: ClassVar[str] = "cohort.zarr"
    REPORT: ClassVar[str] = "report"
    # under report/
    REPORT_HTML: ClassVar[str] = "report.html"
    REPORT_MD: ClassVar[str] = "report.md"
    SUMMARY_JSON: ClassVar[str] = "summary.json"
    REPORT_PDF: ClassVar[str] = "report.pdf"
    # the report's long series, beside it (name -> file)
    REPORT_SERIES: ClassVar[dict[str, str]] = {
        "cost_curve": "cost_curve.csv",
        "hardware_curve": "hardware_curve.csv",
        "failures": "failures.csv",
        "tiles_per_slide": "tiles_per_slide.csv",
        "workers": "workers.csv",
    }
    QC: ClassVar[str] = "qc"
    EXPORT: ClassVar[str] = "export"  # pathopipe export: export/<format>/<model>/
    PERFORMANCE_REPORT: ClassVar[str] = "dask-performance.html"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", os.fspath(root))

    def path(self, *parts: str) -> str:
        """``root/part/...`` (a local path or a URL)."""
        return fileio.join(self.root, *parts)

    @property
    def manifest(self) -> str:
        return self.path(self.MANIFEST)

    @property
    def run_json(self) -> str:
        return self.path(self.RUN_JSON)

    @property
    def metrics(self) -> str:
        return self.path(self.METRICS)

    @property
    def lock(self) -> str:
        return self.path(self.LOCK)

    @property
    def bench(self) -> str:
        return self.path(self.BENCH)

    @property
    def slides(self) -> str:
        return self.path(self.SLIDES)

    @property
    def cohort(self) -> str:
        return self.path(self.COHORT)

    @property
    def report(self) -> str:
        return self.path(self.REPORT)

    @property
    def qc(self) -> str:
        return self.path(self.REPORT, self.QC)

    def export_folder(self, fmt: str, model: str) -> str:
        """Where ``pathopipe export`` writes one model's files in a format."""
        return self.path(self.EXPORT, fmt, model)

    def report_file(self, name: str) -> str:
        return self.path(self.REPORT, name)

    def slide_store(self, slide_id: str) -> str:
        """The store of one slide: ``OUT/slides/<slide_id>.zarr``."""
        return self.path(self.SLIDES, f"{slide_id}{self.STORE_SUFFIX}")

    @classmethod
    def slide_id_of(cls, name: str) -> str | None:
        """The slide id of an entry of ``slides/`` (``<slide_id>.zarr``), or None for other names."""
        return name[: -len(cls.STORE_SUFFIX)] if name.endswith(cls.STORE_SUFFIX) else None

    def extraction_manifest(self, keys: Sequence[str]) -> str:
        """``pathopipe extract``'s per-slide records: ``OUT/features-<key>[+<key>...].csv``."""
        return self.path(f"features-{'+'.join(keys)}.csv")

    def extraction_run_json(self, keys: Sequence[str]) -> str:
        """``pathopipe extract``'s run facts: ``OUT/extract-<key>[+<key>...].json``."""
        return self.path(f"extract-{'+'.join(keys)}.json")

    @staticmethod
    def is_extraction_run_json(name: str) -> bool:
        """Whether a file name in ``OUT`` is one of ``pathopipe extract``'s run facts."""
        return name.startswith("extract-") and name.endswith(".json")
