"""Command definitions. Exit codes: 0 success, 1 some slides failed, 2 bad input, 3 output locked."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from pathopipe.errors import PathopipeError

EXIT_OK, EXIT_SLIDES_FAILED, EXIT_BAD_INPUT, EXIT_LOCKED = 0, 1, 2, 3

app = typer.Typer(
    name="pathopipe",
    help="Whole-slide images to tiles (and features) in Zarr v3, on a Dask cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
        force=True,
    )


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    err_console.print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@app.command()
def info(
    slide: Annotated[Path, typer.Argument(help="slide file")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    backend: Annotated[str, typer.Option(help="auto, openslide or tiffslide")] = "auto",
    properties: Annotated[bool, typer.Option(help="include all backend properties")] = False,
) -> None:
    """Print a slide's metadata: size, levels, resolution, vendor, backend."""
    from pathopipe.slide import open_slide

    try:
        with open_slide(slide, backend=backend) as reader:
            data = reader.info.to_dict(with_properties=properties)
    except (PathopipeError, KeyError) as err:
        raise _fail(str(err)) from None
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table(title=str(slide), show_header=False)
    for key in ("backend", "vendor", "dimensions", "mpp_x", "mpp_y", "mpp_source", "objective_power"):
        table.add_row(key, str(data[key]))
    for i, (dims, ds) in enumerate(zip(data["level_dimensions"], data["level_downsamples"], strict=True)):
        table.add_row(f"level {i}", f"{dims[0]} x {dims[1]}  (downsample {ds:.4g})")
    console.print(table)


@app.command()
def backends() -> None:
    """List the slide backends and tissue detectors."""
    from pathopipe.slide import slide_backends
    from pathopipe.tissue import tissue_detectors

    table = Table("kind", "name", "description")
    for entry in slide_backends:
        table.add_row("slide backend", entry.name, entry.description)
    for entry in tissue_detectors:
        table.add_row("tissue detector", entry.name, entry.description)
    console.print(table)


def _summary_table(records: list) -> Table:
    table = Table("slide", "status", "tiles", "stored MB", "seconds")
    table.add_column("note", max_width=48, no_wrap=True, overflow="ellipsis")
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
            r.error or r.warnings,
        )
    return table


@app.command()
def tile(
    inputs: Annotated[list[Path], typer.Argument(help="slide files and/or folders of slides")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config or workflow")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override, e.g. tiling.tile_size=256 (repeatable)")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes (cluster.n_workers)")] = None,
    force: Annotated[bool, typer.Option(help="redo slides whose store is already complete")] = False,
    progress: Annotated[bool, typer.Option(help="show live progress")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Tile slides into one Zarr v3 store per slide under OUT/slides/, on a local Dask cluster."""
    from pathopipe.cli._progress import RunProgress
    from pathopipe.config import load_config
    from pathopipe.output import RunLockedError
    from pathopipe.parallel import tile_slides

    _setup_logging(verbose)
    overrides = list(set_ or [])
    if workers is not None:
        overrides.append(f"cluster.n_workers={workers}")
    bar: RunProgress | None = None

    def started(info: dict) -> None:
        nonlocal bar
        cluster = info["cluster"]
        link = f", dashboard {cluster['dashboard']}" if cluster.get("dashboard") else ""
        console.print(
            f"[bold]{info['slides']}[/bold] slides -> {out}  ({cluster['workers']} workers{link})",
            highlight=False,
        )
        bar = RunProgress(console, info["slides"], enabled=progress).__enter__()

    try:
        cfg = load_config(config, overrides)
        result = tile_slides(
            inputs, out, cfg, force=force, on_start=started, on_event=lambda e: bar and bar(e)
        )
    except RunLockedError as err:
        raise _fail(str(err), EXIT_LOCKED) from None
    except PathopipeError as err:
        raise _fail(str(err)) from None
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    console.print(_summary_table(result.records))
    if result.failed:
        err_console.print(
            f"[red]{len(result.failed)} of {len(result.records)} slides failed[/red]; "
            f"see {out / 'manifest.csv'}"
        )
        raise typer.Exit(EXIT_SLIDES_FAILED)


def main() -> None:
    app()
