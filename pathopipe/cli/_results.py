"""Commands on a run's output: status, report, pack, qc, verify."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pathopipe import fileio
from pathopipe.cli._common import EXIT_SLIDES_FAILED, app, console, fail, setup_logging
from pathopipe.errors import PathopipeError


@app.command()
def status(
    out: Annotated[str, typer.Argument(help="output folder or URL of a run")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Summarise a run in progress or finished: state, slides done/failed, tiles, bytes, errors."""
    from pathopipe.output import run_status

    try:
        st = run_status(out)
    except PathopipeError as err:
        raise fail(str(err)) from None
    if as_json:
        print(json.dumps(st.to_dict(), indent=2))
        return
    colour = {"running": "yellow", "finished": "green", "interrupted": "red"}[st.state]
    console.print(f"{out}: [{colour}]{st.state}[/{colour}]", highlight=False)
    if st.owner:
        console.print(f"  run: pid {st.owner.get('pid')} on {st.owner.get('host')}", highlight=False)
    counted = sum(st.counts.values())
    parts = ", ".join(f"{n} {s}" for s, n in sorted(st.counts.items()))
    console.print(f"  slides: {st.slides} given; {parts or 'none recorded yet'}", highlight=False)
    if counted < st.slides:
        console.print(f"  {st.slides - counted} not recorded yet", highlight=False)
    if st.elapsed is not None:
        rate = f", {st.tiles / st.elapsed:,.1f} tiles/s" if st.elapsed > 0 else ""
        console.print(
            f"  tiles: {st.tiles:,} in complete slides; {st.bytes / 1e6:,.1f} MB stored; "
            f"{st.elapsed:,.0f} s{rate}; stages: {', '.join(st.stages) or '-'}",
            highlight=False,
        )
    for r in st.failed:
        console.print(f"  [red]failed[/red] {r.slide_id} ({r.stage}): {escape(r.error)}", highlight=False)
    if st.state == "interrupted":
        console.print("  rerun the same command to finish it (complete slides are kept)", highlight=False)


@app.command()
def report(
    out: Annotated[str, typer.Argument(help="output folder or URL (s3://...) of a run")],
    costs: Annotated[Path | None, typer.Option(help="cost profile YAML (examples: configs/costs/)")] = None,
    slides_per_day: Annotated[
        float | None, typer.Option(min=0, help="target volume for capacity, storage growth and costs")
    ] = None,
) -> None:
    """Write OUT/report/: report.html (self-contained), report.md and summary.json, from the
    run's measured metrics, manifest and stores."""
    from pathopipe.report import load_costs, write_report

    try:
        profile = load_costs(costs) if costs else None
        if profile is not None and not slides_per_day:
            raise fail("--costs needs --slides-per-day (the volume to price)")
        paths = write_report(out, costs=profile, slides_per_day=slides_per_day)
    except PathopipeError as err:
        raise fail(str(err)) from None
    for kind, path in paths.items():
        console.print(f"{kind:5s} {path}", highlight=False)


@app.command()
def pack(
    out: Annotated[str, typer.Argument(help="output folder of a run")],
    model: Annotated[list[str] | None, typer.Option(help="model key (repeat; default: every model)")] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Write OUT/cohort.zarr: every complete slide's features per model in one sharded array,
    with row offsets and a slide table (open_run reads it while it is up to date)."""
    from pathopipe.loader import open_run, pack_run

    setup_logging(verbose)
    try:
        path = pack_run(out, model or None)
        run = open_run(out)
        for key in run.models:
            cohort = run.cohort(key)
            console.print(
                f"{key}: {len(cohort)} slides, {cohort.n_rows:,} rows x {cohort.features.shape[1]} "
                f"({cohort.source})",
                highlight=False,
            )
    except PathopipeError as err:
        raise fail(str(err)) from None
    console.print(f"wrote {path}", highlight=False)


@app.command()
def qc(
    out: Annotated[str, typer.Argument(help="output folder of a run")],
    model: Annotated[list[str] | None, typer.Option(help="model for feature maps (default: all)")] = None,
    slide: Annotated[list[str] | None, typer.Option(help="slide id (repeat; default: every slide)")] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Write QC pictures under OUT/report/qc/: per slide the thumbnail with tissue mask and tile
    grid, and a feature map per model (first three PCA components as RGB)."""
    from pathopipe.loader import open_run
    from pathopipe.report.qc import write_qc

    setup_logging(verbose)
    try:
        run = open_run(out)
        unknown = [s for s in slide or [] if s not in run.slide_ids]
        if unknown:
            raise fail(f"no complete slide {unknown} in {out} (slides: {', '.join(run.slide_ids[:5])} ...)")
        written = write_qc(run, models=model or None, slide_ids=slide or None)
    except PathopipeError as err:
        raise fail(str(err)) from None
    console.print(f"wrote {len(written)} pictures under {fileio.join(out, 'report', 'qc')}", highlight=False)


@app.command()
def verify(
    out: Annotated[str, typer.Argument(help="output folder or URL (s3://...) of a run")],
    quick: Annotated[bool, typer.Option(help="skip decoding every tile (presence and shapes only)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Check every finished store against the manifest without modifying anything: complete
    flags, shapes, every chunk present and decodable, coords inside the slide, finite features.
    Exit 0 when all is well, 1 when problems were found."""
    from pathopipe.output.verify import verify_run

    try:
        report = verify_run(out, decode=not quick)
    except PathopipeError as err:
        raise fail(str(err)) from None
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for problem in report.problems:
            console.print(f"[red]problem[/red] {escape(str(problem))}", highlight=False)
        state = "[green]ok[/green]" if report.ok else f"[red]{len(report.problems)} problem(s)[/red]"
        console.print(
            f"{out}: {report.slides} slides, {report.arrays} arrays checked: {state}", highlight=False
        )
    if not report.ok:
        raise typer.Exit(EXIT_SLIDES_FAILED)
