"""Commands that plan before a run: plan (a cohort's forecast) and bench (calibration)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from pathopipe.cli._common import ClusterOption, SetOption, app, console, fail, setup_logging
from pathopipe.errors import PathopipeError


@app.command()
def plan(
    workflow: Annotated[Path, typer.Argument(help="workflow YAML")],
    slides: Annotated[
        list[str], typer.Option("--slides", "-s", help="folder, glob pattern, slide file or .csv list")
    ],
    calibration: Annotated[
        Path | None, typer.Option(help="OUT of an earlier run of the same workflow (for the forecast)")
    ] = None,
    costs: Annotated[
        Path | None, typer.Option(help="cost profile YAML: also price the forecast (needs --calibration)")
    ] = None,
    cluster: ClusterOption = None,
    set_: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Before a run: tile counts from a tissue-only pass, and with --calibration the predicted
    wall time and stored bytes of running the workflow on this cluster."""
    from pathopipe.config import load_config
    from pathopipe.parallel.plan import plan_workflow

    setup_logging(verbose)
    try:
        from pathopipe.report import load_costs

        cfg = load_config(workflow, list(set_ or []), cluster_profile=cluster)
        profile = load_costs(costs) if costs else None
        result = plan_workflow(slides, cfg, calibration=calibration, costs=profile)
    except PathopipeError as err:
        raise fail(str(err)) from None
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    console.print(f"{result['slides']} slides, {result['tiles']:,} tiles ({result['slots']} worker slots)")
    for row in result["failed"]:
        console.print(
            f"  [red]cannot survey[/red] {row['slide_id']}: {escape(row['error'])}", highlight=False
        )
    if "predicted_wall_seconds" in result:
        console.print(
            f"predicted: {result['predicted_command_seconds']:,.1f} s for the command "
            f"({result['predicted_wall_seconds']:,.1f} s from first task to last, "
            f"{result['calibration']['command_startup_seconds']:,.1f} s start-up, "
            f"{result['calibration']['command_shutdown_seconds']:,.1f} s shutdown), "
            f"{result['predicted_bytes'] / 1e6:,.1f} MB stored (calibration {calibration})",
            highlight=False,
        )
    if "predicted_cost" in result:
        cost = result["predicted_cost"]
        example = " (EXAMPLE prices)" if cost["example_prices"] else ""
        console.print(
            f"estimated rent{example}: {cost['compute']:,.2f} {cost['currency']} of compute "
            f"({cost['core_hours']:,.2f} core-hours, {cost['gpu_hours']:,.2f} GPU-hours), "
            f"{cost['storage_per_month']:,.4f} {cost['currency']} per month of storage",
            highlight=False,
        )


@app.command()
def bench(
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder of the calibration run")],
    workflow: Annotated[
        Path | None,
        typer.Option("--workflow", "-w", help="workflow YAML (default: workflows/demo.yaml's settings)"),
    ] = None,
    cluster: ClusterOption = None,
    set_: SetOption = None,
    slides: Annotated[int, typer.Option(min=1, help="generated slides in the final run")] = 4,
    trial_slides: Annotated[int, typer.Option(min=1, help="of those, slides each trial runs")] = 2,
    size: Annotated[
        str, typer.Option(help="generated slide size WIDTHxHEIGHT px at 0.25 µm/px")
    ] = "8000x6000",
    layouts: Annotated[
        str, typer.Option(help="local clusters: worker processes x threads to try, e.g. 2x1,1x2")
    ] = "2x1,1x2",
    batch_sizes: Annotated[str, typer.Option(help="feature batch sizes to try, e.g. 16,32,64")] = "16,32,64",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Calibrate this machine or cluster on generated slides (no real data needed): try worker
    layouts and batch sizes, run the workflow with the fastest into OUT, and write its report
    (OUT/report/) with the trials. Use OUT with `pathopipe plan --calibration OUT`."""
    from pathopipe.config import load_config
    from pathopipe.parallel.bench import parse_layouts, run_bench
    from pathopipe.report import write_report

    setup_logging(verbose)
    try:
        width, sep, height = size.partition("x")
        if not sep or not width.isdigit() or not height.isdigit():
            raise fail(f"--size {size!r} must look like WIDTHxHEIGHT, e.g. 8000x6000")
        try:
            batches = [int(b) for b in batch_sizes.split(",") if b.strip()]
        except ValueError:
            raise fail(f"--batch-sizes {batch_sizes!r} must be integers separated by commas") from None
        default = Path(__file__).resolve().parents[2] / "workflows" / "demo.yaml"
        source = workflow or (default if default.is_file() else None)
        cfg = load_config(source, list(set_ or []), cluster_profile=cluster)

        def tried(trial: Any) -> None:
            layout = f"{trial.workers}x{trial.threads_per_worker}" if trial.workers else "profile"
            what = (
                trial.error
                or f"{trial.tiles} tiles in {trial.seconds:.1f} s = {trial.tiles_per_second:,.1f} tiles/s"
            )
            console.print(f"  trial {layout:>7s} batch {trial.batch_size:4d}: {what}", highlight=False)

        record = run_bench(
            out, cfg, slides=slides, size=(int(width), int(height)), layouts=parse_layouts(layouts),
            batch_sizes=batches, trial_slides=trial_slides, on_trial=tried,
        )  # fmt: skip
        report = write_report(out)
    except PathopipeError as err:
        raise fail(str(err)) from None
    best, final = record["best"], record["final"]
    console.print(
        f"best: {best['workers'] or 'profile'} workers x {best['threads_per_worker']} threads, batch "
        f"{best['batch_size']}; final run {final['tiles']} tiles in {final['seconds']:.1f} s "
        f"({final['tiles_per_second']:,.1f} tiles/s)",
        highlight=False,
    )
    console.print(f"report {report.paths['html']}", highlight=False)
