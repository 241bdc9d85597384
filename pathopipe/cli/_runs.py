"""Commands that run the pipeline on a cluster: tile, run, extract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from pathopipe.cli._common import (
    ClusterOption,
    SetOption,
    app,
    execute,
    fail,
    process_started,
    report_records,
    setup_logging,
)
from pathopipe.output.layout import RunLayout


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

    setup_logging(verbose)
    overrides = list(set_ or [])
    if workers is not None:
        overrides.append(f"cluster.n_workers={workers}")

    def go(on_start: Any, on_event: Any) -> Any:
        cfg = load_config(config, overrides, cluster_profile=cluster)
        return tile_slides(inputs, out, cfg, force=force, on_start=on_start, on_event=on_event,
                           started=process_started())  # fmt: skip

    report_records(execute(progress, out, go), RunLayout(out).manifest)


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

    setup_logging(verbose)

    def go(on_start: Any, on_event: Any) -> Any:
        cfg = load_config(workflow, list(set_ or []), cluster_profile=cluster)
        return run_workflow(slides, out, cfg, force=force, on_start=on_start, on_event=on_event,
                            perf_report=perf_report, started=process_started())  # fmt: skip

    report_records(execute(progress, out, go), RunLayout(out).manifest)


def _features_overrides(**given: Any) -> list[str]:
    """``--set features.<key>=<value>`` for each command-line flag that was given."""
    return [f"features.{key}={json.dumps(value)}" for key, value in given.items() if value is not None]


@app.command()
def extract(
    out: Annotated[str, typer.Argument(help="output folder or URL of a `pathopipe tile` run")],
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="preset key, timm/<name> or preset .yaml; repeat for one pass "
            "(features.models; default: the config's)",
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML config or workflow (its features: section)")
    ] = None,
    set_: SetOption = None,
    cluster: ClusterOption = None,
    weights: Annotated[
        str | None,
        typer.Option(help="random, pretrained (local hub cache) or a file path (features.weights)"),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, max=4096, help="features.batch_size")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda[:N] (features.device)")] = None,
    precision: Annotated[
        str | None, typer.Option(help="fp32, bf16 or fp16 autocast (features.precision)")
    ] = None,
    dtype: Annotated[str | None, typer.Option(help="stored feature dtype: float16 or float32")] = None,
    seed: Annotated[int | None, typer.Option(help="seed of random weights (features.seed)")] = None,
    workers: Annotated[
        int | None, typer.Option(help="worker processes (cluster.n_workers; default 1)")
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="torch threads per worker (features.torch_threads; default: cores / workers)"),
    ] = None,
    compile_model: Annotated[
        bool, typer.Option("--compile", help="torch.compile the models (features.compile)")
    ] = False,
    decode_threads: Annotated[
        int | None,
        typer.Option(min=0, max=64, help="tile decode threads per task (features.decode_threads; 0: auto)"),
    ] = None,
    force: Annotated[bool, typer.Option(help="recompute complete features")] = False,
    progress: Annotated[bool, typer.Option(help="show live progress")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Compute features of the stored tiles into OUT/slides/<id>.zarr/features/<model_key>.

    Options are taken like `tile` and `run` take them: --config, then --cluster, then --set, then
    the flags below (each one a features.* or cluster.* key)."""
    from pathopipe.config import load_config
    from pathopipe.features.settings import extraction_settings
    from pathopipe.output.layout import RunLayout
    from pathopipe.parallel.extraction import extract_features

    setup_logging(verbose)
    overrides = list(set_ or []) + _features_overrides(
        models=model or None, weights=weights, batch_size=batch_size, device=device, precision=precision,
        dtype=dtype, seed=seed, torch_threads=threads, compile=compile_model or None,
        decode_threads=decode_threads,
    )  # fmt: skip
    if workers is not None:
        overrides.append(f"cluster.n_workers={workers}")

    def go(on_start: Any, on_event: Any) -> Any:
        # one worker process without a dashboard unless the configuration says otherwise
        cfg = load_config(config, overrides, cluster_profile=cluster, defaults=EXTRACT_DEFAULTS)
        if not cfg.features.models:
            raise fail("give the models: --model KEY (repeatable), or features.models in --config")
        return extract_features(out, extraction_settings(cfg), config=cfg, force=force, on_start=on_start,
                                on_event=on_event, started=process_started())  # fmt: skip

    result = execute(progress, "features", go)
    report_records(result, RunLayout(out).extraction_manifest([m["key"] for m in result.info["models"]]))


EXTRACT_DEFAULTS = {"cluster": {"n_workers": 1, "dashboard": False}}
