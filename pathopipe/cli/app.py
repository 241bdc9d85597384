"""Command definitions. Exit codes: 0 success, 1 some slides failed, 2 bad input, 3 output locked."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from pathopipe import storage
from pathopipe.errors import ClusterLostError, PathopipeError

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


def _setup_logging(verbose: bool) -> None:
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


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    err_console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@app.command()
def info(
    slide: Annotated[Path, typer.Argument(help="slide file")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    backend: Annotated[str, typer.Option(help="auto, tiff, openslide or tiffslide")] = "auto",
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
            escape(r.error or r.warnings),
        )
    return table


def _report(result: Any, manifest: str | Path) -> None:
    """Print the per-slide table; exit 1 when a slide failed."""
    console.print(_summary_table(result.records))
    if result.failed:
        err_console.print(
            f"[red]{len(result.failed)} of {len(result.records)} slides failed[/red]; see {manifest}"
        )
        raise typer.Exit(EXIT_SLIDES_FAILED)


def _start_progress(console_: Console, progress: bool, what: str) -> tuple[Any, Any]:
    """An ``on_start`` callback printing the run's header and starting the progress display,
    and the display holder (``holder[0]`` once started)."""
    from pathopipe.cli._progress import RunProgress

    holder: list[RunProgress] = []

    def started(info: dict) -> None:
        cluster = info["cluster"]
        link = f", dashboard {cluster['dashboard']}" if cluster.get("dashboard") else ""
        console_.print(
            f"[bold]{info['slides']}[/bold] slides -> {what}  ({cluster['kind']} cluster: "
            f"{cluster['workers']} workers, {cluster['threads']} threads{link})",
            highlight=False,
        )
        holder.append(RunProgress(console_, info["slides"], enabled=progress).__enter__())

    return started, holder


def _execute(progress: bool, what: str, go: Any) -> Any:
    """Run ``go(on_start, on_event)`` with the progress display; map errors to exit codes."""
    from pathopipe.output import RunLockedError

    started, bar = _start_progress(console, progress, what)
    try:
        return go(started, lambda event: bar and bar[0](event))
    except RunLockedError as err:
        raise _fail(str(err), EXIT_LOCKED) from None
    except ClusterLostError as err:
        raise _fail(str(err), EXIT_CLUSTER_LOST) from None
    except PathopipeError as err:
        raise _fail(str(err)) from None
    except KeyboardInterrupt:
        if bar:
            bar[0].__exit__(None, None, None)
            bar.clear()
        raise _fail(
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
    typer.Option("--cluster", help="profile: local, local-cuda, slurm, kubernetes, address, or a .yaml"),
]


@app.command()
def tile(
    inputs: Annotated[
        list[str], typer.Argument(help="slide files, folders, glob patterns, a .csv list or URLs (s3://...)")
    ],
    out: Annotated[str, typer.Option("--out", "-o", help="output folder or URL (s3://bucket/run/)")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config or workflow")] = None,
    set_: SetOption = None,
    cluster: ClusterOption = None,
    workers: Annotated[int | None, typer.Option(help="worker processes (cluster.n_workers)")] = None,
    force: Annotated[bool, typer.Option(help="redo slides whose store is already complete")] = False,
    progress: Annotated[bool, typer.Option(help="show live progress")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Tile slides into one Zarr v3 store per slide under OUT/slides/, on a Dask cluster."""
    from pathopipe.config import load_config
    from pathopipe.parallel import tile_slides

    _setup_logging(verbose)
    overrides = list(set_ or [])
    if workers is not None:
        overrides.append(f"cluster.n_workers={workers}")

    def go(on_start: Any, on_event: Any) -> Any:
        cfg = load_config(config, overrides, cluster_profile=cluster)
        return tile_slides(inputs, out, cfg, force=force, on_start=on_start, on_event=on_event)

    _report(_execute(progress, out, go), storage.join(out, "manifest.csv"))


@app.command()
def run(
    workflow: Annotated[Path, typer.Argument(help="workflow YAML (workflows/*.yaml)")],
    slides: Annotated[
        list[str],
        typer.Option("--slides", "-s", help="folder, glob pattern, slide file, .csv list or URL (s3://...)"),
    ],
    out: Annotated[str, typer.Option("--out", "-o", help="output folder or URL (s3://bucket/run/)")],
    cluster: ClusterOption = None,
    set_: SetOption = None,
    force: Annotated[bool, typer.Option(help="redo every slide, even complete ones")] = False,
    perf_report: Annotated[
        bool, typer.Option("--perf-report", help="save Dask's performance report in OUT/report/")
    ] = False,
    progress: Annotated[bool, typer.Option(help="show live progress")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a workflow (tiling, then features of every model it names) over slides, as one
    Dask computation. Rerun the same command to finish an interrupted run."""
    from pathopipe.config import load_config
    from pathopipe.parallel.workflow import run_workflow

    _setup_logging(verbose)

    def go(on_start: Any, on_event: Any) -> Any:
        cfg = load_config(workflow, list(set_ or []), cluster_profile=cluster)
        return run_workflow(
            slides, out, cfg, force=force, on_start=on_start, on_event=on_event, perf_report=perf_report
        )

    _report(_execute(progress, out, go), storage.join(out, "manifest.csv"))


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
        raise _fail(str(err)) from None
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
            raise _fail("--costs needs --slides-per-day (the volume to price)")
        paths = write_report(out, costs=profile, slides_per_day=slides_per_day)
    except PathopipeError as err:
        raise _fail(str(err)) from None
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

    _setup_logging(verbose)
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
    except (PathopipeError, KeyError) as err:
        raise _fail(str(err).strip("'\"")) from None
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
    from pathopipe.plot import write_qc

    _setup_logging(verbose)
    try:
        run = open_run(out)
        unknown = [s for s in slide or [] if s not in run.slide_ids]
        if unknown:
            raise _fail(f"no complete slide {unknown} in {out} (slides: {', '.join(run.slide_ids[:5])} ...)")
        written = write_qc(run, models=model or None, slide_ids=slide or None)
    except (PathopipeError, KeyError) as err:
        raise _fail(str(err).strip("'\"")) from None
    console.print(f"wrote {len(written)} pictures under {storage.join(out, 'report', 'qc')}", highlight=False)


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
        raise _fail(str(err)) from None
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

    _setup_logging(verbose)
    try:
        from pathopipe.report import load_costs

        cfg = load_config(workflow, list(set_ or []), cluster_profile=cluster)
        profile = load_costs(costs) if costs else None
        result = plan_workflow(slides, cfg, calibration=calibration, costs=profile)
    except PathopipeError as err:
        raise _fail(str(err)) from None
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
            f"predicted: {result['predicted_wall_seconds']:,.0f} s from first task to last, "
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

    _setup_logging(verbose)
    try:
        width, sep, height = size.partition("x")
        if not sep or not width.isdigit() or not height.isdigit():
            raise _fail(f"--size {size!r} must look like WIDTHxHEIGHT, e.g. 8000x6000")
        try:
            batches = [int(b) for b in batch_sizes.split(",") if b.strip()]
        except ValueError:
            raise _fail(f"--batch-sizes {batch_sizes!r} must be integers separated by commas") from None
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
        paths = write_report(out)
    except PathopipeError as err:
        raise _fail(str(err)) from None
    best, final = record["best"], record["final"]
    console.print(
        f"best: {best['workers'] or 'profile'} workers x {best['threads_per_worker']} threads, batch "
        f"{best['batch_size']}; final run {final['tiles']} tiles in {final['seconds']:.1f} s "
        f"({final['tiles_per_second']:,.1f} tiles/s)",
        highlight=False,
    )
    console.print(f"report {paths['html']}", highlight=False)


@app.command()
def models() -> None:
    """List the feature extractor presets (any timm model also works as timm/<name>)."""
    from pathopipe.features import list_extractors

    for spec in list_extractors():
        console.print(f"[bold]{spec.key}[/bold]  {spec.description}", highlight=False)
        console.print(
            f"    timm {spec.architecture}, output {spec.output}, input {spec.input_size} px; "
            f"pretrained: {spec.pretrained_hub_id or '-'} (local hub cache); licence: {spec.licence}",
            highlight=False,
        )
    console.print("Any timm model: --model timm/<name>, e.g. timm/resnet50, timm/vit_small_patch16_224")


@app.command()
def extract(
    out: Annotated[str, typer.Argument(help="output folder of a `pathopipe tile` run")],
    model: Annotated[
        list[str],
        typer.Option("--model", "-m", help="preset key, timm/<name> or preset .yaml; repeat for one pass"),
    ],
    weights: Annotated[
        str, typer.Option(help="random, pretrained (local hub cache) or a file path")
    ] = "random",
    batch_size: Annotated[int, typer.Option(min=1, max=4096)] = 32,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N]")] = "auto",
    precision: Annotated[str, typer.Option(help="fp32, bf16 or fp16 (autocast)")] = "fp32",
    dtype: Annotated[str, typer.Option(help="stored feature dtype: float16 or float32")] = "float16",
    seed: Annotated[int, typer.Option(help="seed of random weights")] = 0,
    workers: Annotated[int | None, typer.Option(help="worker processes")] = None,
    threads: Annotated[
        int | None, typer.Option(help="torch threads per worker (default: cores / workers)")
    ] = None,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model")] = False,
    decode_threads: Annotated[
        int,
        typer.Option(min=0, max=64, help="tile decode threads per task (0: 1 on CPU, cores/GPU - 1 on CUDA)"),
    ] = 0,
    force: Annotated[bool, typer.Option(help="recompute complete features")] = False,
    progress: Annotated[bool, typer.Option(help="show live progress")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Compute features of the stored tiles into OUT/slides/<id>.zarr/features/<model_key>."""
    import os

    from pathopipe.config import ClusterConfig
    from pathopipe.features import resolve_model
    from pathopipe.parallel.extraction import extract_features
    from pathopipe.stages.extraction import ExtractionSettings

    _setup_logging(verbose)
    if precision not in ("fp32", "bf16", "fp16"):
        raise _fail(f"--precision must be fp32, bf16 or fp16, not {precision!r}")
    if dtype not in ("float16", "float32"):
        raise _fail(f"--dtype must be float16 or float32, not {dtype!r}")
    n_workers = workers or 1

    def go(on_start: Any, on_event: Any) -> Any:
        settings = [
            ExtractionSettings(
                model=resolve_model(name),
                weights=weights,
                seed=seed,
                precision=precision,  # type: ignore[arg-type]
                feature_dtype=dtype,  # type: ignore[arg-type]
                batch_size=batch_size,
                device=device,
                torch_threads=threads or max(1, (os.cpu_count() or 1) // n_workers),
                compile=compile_model,
                decode_threads=decode_threads,
            )
            for name in model
        ]
        cluster = ClusterConfig(n_workers=n_workers, dashboard=False)
        return extract_features(
            out, settings, cluster=cluster, force=force, on_start=on_start, on_event=on_event
        )

    result = _execute(progress, "features", go)
    _report(result, storage.join(out, f"features-{'+'.join(m['key'] for m in result.info['models'])}.csv"))


def main() -> None:
    app()
