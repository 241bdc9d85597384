"""What every command shares: the typer app, consoles, exit codes, errors as exit codes, the
per-slide table and the progress display of a run."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from pathopipe.errors import ClusterLostError, PathopipeError
from pathopipe.output.manifest import SlideRecord

EXIT_OK, EXIT_SLIDES_FAILED, EXIT_BAD_INPUT, EXIT_LOCKED = 0, 1, 2, 3  # documented in README.md
EXIT_CLUSTER_LOST = 4  # the Dask scheduler went away mid-run
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

app = typer.Typer(
    name="pathopipe",
    help="Whole-slide images to tiles (and features) in Zarr v3, on a Dask cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        # the handler filters too: records propagated from library loggers skip the root level
        handlers=[
            RichHandler(
                console=err_console, show_path=False, level=logging.INFO if verbose else logging.WARNING
            )
        ],
        force=True,
    )
    # tifffile logs what it finds odd in a file (a bad offset) as warnings of its own; the slide's
    # error says it in words, so they are shown only with --verbose
    logging.getLogger("tifffile").setLevel(logging.INFO if verbose else logging.ERROR)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    err_console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def summary_table(records: list[SlideRecord]) -> Table:
    table = Table("slide", "status", "tiles", "stored MB", "seconds")
    # in a narrow terminal the note gives way (it is the only column rich may narrow), cut to one line
    table.add_column("note", max_width=48)
    for column in table.columns[:-1]:
        column.no_wrap = True
    for r in records:
        style = {"failed": "red", "done": "green", "skipped": "cyan"}.get(r.status, "")
        table.add_row(
            r.slide_id,
            f"[{style}]{r.status}[/{style}]" if style else r.status,
            "" if r.n_tiles is None else f"{r.n_tiles:,}",
            "" if r.bytes is None else f"{r.bytes / 1e6:,.1f}",
            "" if r.seconds is None else f"{r.seconds:.1f}",
            Text(r.error or r.warnings, no_wrap=True, overflow="ellipsis"),
        )
    return table


def report_records(result: Any, manifest: str | Path) -> None:
    """Print the per-slide table; exit 1 when a slide failed."""
    console.print(summary_table(result.records))
    if result.failed:
        err_console.print(
            f"[red]{len(result.failed)} of {len(result.records)} slides failed[/red]; see {manifest}"
        )
        raise typer.Exit(EXIT_SLIDES_FAILED)


def start_progress(console_: Console, progress: bool, what: str) -> tuple[Any, Any]:
    """An ``on_start`` callback printing the run's header and starting the progress display,
    and the display holder (``holder[0]`` once started)."""
    from pathopipe.cli._progress import RunProgress

    holder: list[RunProgress] = []

    def started(info: dict[str, Any]) -> None:
        cluster = info["cluster"]
        link = f", dashboard {cluster['dashboard']}" if cluster.get("dashboard") else ""
        console_.print(
            f"[bold]{info['slides']}[/bold] slides -> {what}  ({cluster['kind']} cluster: "
            f"{cluster['workers']} workers, {cluster['threads']} threads{link})",
            highlight=False,
        )
        holder.append(RunProgress(console_, info["slides"], enabled=progress).__enter__())

    return started, holder


def process_started() -> float | None:
    """When this command's process started (epoch seconds, to the kernel's 10 ms tick): a run's
    start-up is counted from there, interpreter and imports included. Linux; None elsewhere
    (the run then counts from its own start). psutil's figure rests on the boot time in whole
    seconds, up to 1 s off."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            after_name = fh.read().rsplit(")", 1)[1].split()
        started_ticks = int(after_name[19])  # field 22, starttime, in clock ticks since boot
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - started_ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - age
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def execute(progress: bool, what: str, go: Any) -> Any:
    """Run ``go(on_start, on_event)`` with the progress display; map errors to exit codes."""
    from pathopipe.output import RunLockedError

    started, bar = start_progress(console, progress, what)
    try:
        return go(started, lambda event: bar and bar[0](event))
    except RunLockedError as err:
        raise fail(str(err), EXIT_LOCKED) from None
    except ClusterLostError as err:
        raise fail(str(err), EXIT_CLUSTER_LOST) from None
    except PathopipeError as err:
        raise fail(str(err)) from None
    except KeyboardInterrupt:
        if bar:
            bar[0].__exit__(None, None, None)
            bar.clear()
        raise fail(
            "interrupted: complete slides are kept and marked in the manifest; "
            "rerun the same command to finish the rest",
            EXIT_INTERRUPTED,
        ) from None
    finally:
        if bar:
            bar[0].__exit__(None, None, None)


SetOption = Annotated[
    list[str] | None, typer.Option("--set", help="override, e.g. tiling.tile_size=256 (repeatable)")
]
ClusterOption = Annotated[
    str | None,
    typer.Option("--cluster", help="a cluster profile (configs/clusters/; `pathopipe backends`) or a .yaml"),
]
