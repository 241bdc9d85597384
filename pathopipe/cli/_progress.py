"""Live progress of a run: slides done/failed/total, tiles and tiles/s, ETA."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pathopipe.parallel import ProgressEvent


class RunProgress:
    """Renders :class:`ProgressEvent` s as rich progress bars: slides, and tiles per stage."""

    def __init__(self, console: Console, n_slides: int, *, enabled: bool = True) -> None:
        self.progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            TextColumn("{task.completed:>7.0f}/{task.total:<7.0f}"),
            TextColumn("{task.fields[extra]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
            refresh_per_second=4,
        )
        self.slides = self.progress.add_task("slides", total=n_slides, extra="")
        self.bars: dict[str, Any] = {}  # stage -> its tiles bar
        self.processed: dict[str, int] = {}
        self.done = self.failed = self.skipped = 0
        self.t0 = time.perf_counter()

    def __enter__(self) -> RunProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def _slide_line(self) -> str:
        return f"done {self.done}  failed {self.failed}  skipped {self.skipped}"

    def _bar(self, stage: str) -> Any:
        if stage not in self.bars:
            self.bars[stage] = self.progress.add_task(f"{stage or 'tiles':8s}", total=0, extra="")
            self.processed[stage] = 0
        return self.bars[stage]

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "planned":
            bar = self._bar(event.stage)
            total = self.progress.tasks[bar].total or 0
            self.progress.update(bar, total=total + event.tiles)
        elif event.kind == "tiles":
            bar = self._bar(event.stage)
            self.processed[event.stage] += event.tiles
            rate = self.processed[event.stage] / max(1e-9, time.perf_counter() - self.t0)
            self.progress.update(bar, advance=event.tiles, extra=f"{rate:,.0f} tiles/s")
        else:
            self.done += event.kind == "done"
            self.failed += event.kind == "failed"
            self.skipped += event.kind == "skipped"
            self.progress.update(self.slides, advance=1, extra=self._slide_line())
            if event.kind == "failed":
                self.progress.console.print(f"[red]failed[/red] {event.slide_id}: {escape(event.message)}")
