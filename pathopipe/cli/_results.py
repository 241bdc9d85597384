"""Commands on a run's output: status, report, pack, qc, verify."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

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
    for model in st.random_weights:
        console.print(f"  [yellow]random weights[/yellow]: the features of {model} are not the model's "
                      "(computed with --weights random)", highlight=False)  # fmt: skip
    for r in st.failed:
        console.print(f"  [red]failed[/red] {r.slide_id} ({r.stage}): {escape(r.error)}", highlight=False)
    if st.state == "interrupted":
        console.print("  rerun the same command to finish it (complete slides are kept)", highlight=False)


@app.command()
def report(
    out: Annotated[str, typer.Argument(help="output folder or URL (s3://...) of a run")],
    slides_per_day: Annotated[
        float | None, typer.Option(min=0, help="target volume to size, store and price")
    ] = None,
    costs: Annotated[
        list[Path] | None,
        typer.Option(help="cost profile YAML (repeat to compare; examples: configs/costs/)"),
    ] = None,
    cohort: Annotated[
        Path | None, typer.Option(help="`pathopipe plan --json` output: size for these slides' tile counts")
    ] = None,
    against: Annotated[
        list[str] | None, typer.Option(help="another run's OUT to show side by side (repeat)")
    ] = None,
    pdf: Annotated[
        bool, typer.Option("--pdf", help="also print the report as PDF, with headless Chromium")
    ] = False,
    peak_factor: Annotated[
        float | None, typer.Option(min=1, help="peak-hour rate over the average [2]")
    ] = None,
    utilisation: Annotated[
        float | None, typer.Option(min=0.01, max=1, help="busy share of hardware at the peak [0.7]")
    ] = None,
    retention_years: Annotated[
        float | None, typer.Option(min=0.01, help="years outputs are kept [10]")
    ] = None,
    gpu_tflops: Annotated[
        float | None,
        typer.Option(min=0.01, help="one GPU's effective TFLOP/s, for GPU estimates of CPU runs [200]"),
    ] = None,
    cores_per_gpu: Annotated[
        float | None,
        typer.Option(min=0.01, help="CPU cores per GPU in a GPU server, for the bottleneck [16]"),
    ] = None,
    clinical_tissue_cm2: Annotated[
        float | None,
        typer.Option(min=0.0001, help="tissue on a clinical slide, for the small-slide check [1.5]"),
    ] = None,
) -> None:
    """Write OUT/report/: report.html (self-contained), report.md, summary.json and CSV series
    (with --pdf: report.pdf), from the run's measured metrics, manifest and stores; print the
    decision summary."""
    from pathopipe.report import SizingAssumptions, load_cohort, load_costs, write_report

    given = {
        "peak_factor": peak_factor,
        "target_utilisation": utilisation,
        "retention_years": retention_years,
        "gpu_tflops": gpu_tflops,
        "cores_per_gpu": cores_per_gpu,
        "clinical_tissue_cm2": clinical_tissue_cm2,
    }
    try:
        profiles = [load_costs(path) for path in costs or []]
        assumptions = SizingAssumptions(**{k: v for k, v in given.items() if v is not None})
        plan = load_cohort(cohort) if cohort else None
        written = write_report(
            out,
            costs=profiles,
            slides_per_day=slides_per_day,
            assumptions=assumptions,
            cohort=plan,
            against=list(against or []),
            pdf=pdf,
        )
    except PathopipeError as err:
        raise fail(str(err)) from None
    print_decision(written.summary)
    for kind, path in written.paths.items():
        console.print(f"{kind:5s} {path}", highlight=False)


def _value(value: Any, scale: float = 1.0) -> str:
    from pathopipe.report import format_number

    if isinstance(value, (int, float)) and not isinstance(value, bool) and scale != 1:
        value = value * scale
    return format_number(value)


def print_decision(summary: dict[str, Any]) -> None:
    """The decision summary's rows on the console (the first section of report.html)."""
    from pathopipe.report.decision import OPTION_NAMES

    decision = summary["decision"]
    console.print(f"[bold]{escape(decision['question'])}[/bold]", highlight=False)
    console.print(escape(decision["basis"]), highlight=False)
    if decision.get("answer"):
        console.print(f"[bold]{escape(decision['answer'])}[/bold]", highlight=False)
    rows = decision.get("hardware", []) + decision.get("storage", []) + decision["capacity"]
    sentences = [r for r in rows if isinstance(r["value"], str)]  # the bottleneck and its remedy
    table = Table("figure", "value", "unit", "provenance", box=None, pad_edge=False)
    for row in (r for r in rows if not isinstance(r["value"], str)):
        table.add_row(
            escape(row["label"]), escape(_value(row["value"], row["scale"])), row["unit"], row["provenance"]
        )
    console.print(table)
    for row in sentences:
        console.print(
            f"{escape(row['label'])}: {escape(row['value'])} ({row['provenance']})", highlight=False
        )
    if decision.get("costs"):
        profiles = decision["costs"]["profiles"]
        table = Table(
            "per option",
            *(f"{p['name']} ({p['currency']})" for p in profiles),
            "unit",
            box=None,
            pad_edge=False,
        )
        for row in decision["costs"]["rows"]:
            values = [row["values"][p["name"]] for p in profiles]
            if row["key"] == "cheapest":
                values = [OPTION_NAMES.get(v or "", "-") for v in values]
            cells = [escape(_value(v, row["scale"])) for v in values]
            table.add_row(escape(row["label"]), *cells, row["unit"])
        console.print(table)
    for line in decision.get("break_evens", []):
        console.print(f"  {escape(line)}", highlight=False)
    console.print(f"confidence: {escape(decision['confidence']['text'])}", highlight=False)
    for warning in decision["warnings"]:
        console.print(f"[yellow]warning[/yellow] {escape(warning['text'])}", highlight=False, soft_wrap=True)


@app.command()
def export(
    out: Annotated[str, typer.Argument(help="output folder of a run with features")],
    format_: Annotated[
        str, typer.Option("--format", "-f", help="clam-h5, trident-h5 or pt (one file per slide)")
    ],
    model: Annotated[str | None, typer.Option(help="model key (needed when the run has several)")] = None,
    to: Annotated[
        Path | None, typer.Option(help="folder to write to (default OUT/export/FORMAT/MODEL)")
    ] = None,
) -> None:
    """Write one model's features per slide in the layout CLAM or TRIDENT training code reads."""
    from pathopipe.loader import export_features

    try:
        written = export_features(out, format_, model=model, dest=to)
    except PathopipeError as err:
        raise fail(str(err)) from None
    folder = written[0].parent if written else to
    console.print(f"wrote {len(written)} files ({format_}) under {folder}", highlight=False)


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
