"""The detail sections behind the decision summary: where the time goes, the run and its
cluster, slides and failures, storage, sizing, costs, runs side by side, calibration and
what-if estimates. Each shows figures of ``summary.json`` with their labels
(:mod:`pathopipe.report.labels`) and the formulas they come from."""

from __future__ import annotations

from typing import Any

from pathopipe.report.costs import FORMULAS as COST_FORMULAS
from pathopipe.report.document import Section, Table, capped, decision_section, figure_rows, scaled
from pathopipe.report.labels import STAGE_FIGURES, humanize, label_for
from pathopipe.report.measure import STAGE_DEFINITIONS
from pathopipe.report.more_sections import bench_section, comparison_section, what_if_section

__all__ = ["build_sections", "detail_sections"]


def _stage_table(summary: dict[str, Any]) -> Table:
    stages = summary["stages"]
    names = list(stages)
    rows, tags = [], []
    for key in STAGE_FIGURES:
        if all(stages[n].get(key) is None for n in names):
            continue
        label = label_for(("stages", names[0], key))
        assert label is not None
        rows.append(
            [label.text, *(scaled(("stages", n, key), stages[n].get(key)) for n in names), label.unit]
        )
        tags.append(label.provenance)
    return Table(["Figure", *(f"Stage {n}" for n in names), "Unit"], rows, tags)


def _steps_table(summary: dict[str, Any]) -> Table:
    stages = summary["stages"]
    names = list(stages)
    steps = sorted({s for st in stages.values() for s in st["steps_seconds"]})
    rows = [[humanize(s), *(stages[n]["steps_seconds"].get(s) for n in names), "s"] for s in steps]
    return Table(
        ["Step (summed over tasks)", *(f"Stage {n}" for n in names), "Unit"], rows, ["measured"] * len(rows)
    )


def _time(summary: dict[str, Any], plots: dict[str, str]) -> Section:
    section = Section("Where the time goes", "stages", text=STAGE_DEFINITIONS)
    section.tables = [_stage_table(summary), _steps_table(summary)]
    section.tables.append(
        figure_rows(
            summary,
            [("per_slide", k) for k in ("core_seconds", "gpu_seconds", "stored_bytes", "tiles")],
            header="Per slide, as measured (start-up left out)",
        )
    )
    section.plots = [plots[k] for k in ("steps",) if k in plots]
    return section


def _run(summary: dict[str, Any], plots: dict[str, str], files: dict[str, str]) -> Section:
    run = summary["run"]
    hosts = ", ".join(run["cpu_models"]) + (
        f"; GPUs: {', '.join(run['gpu_models'])}" if run["gpu_models"] else ""
    )
    section = Section(
        "Run and cluster",
        "run",
        text=(
            f"Output folder `{summary['out']}`, run `{summary['run_id']}` (the latest run in the "
            "metrics; a resumed "
            f"run reports its own tasks). Cluster: {run['cluster_kind']} on {hosts}. The bottleneck "
            "stage is the one "
            f"with the most busy time: {summary['bottleneck_stage']}."
        ),
    )
    paths: list[tuple[Any, ...]] = [
        ("run", "slides"),
        *(("run", "status_counts", s) for s in ("done", "skipped", "failed")),
        ("run", "wall_seconds"),
        ("run", "startup_seconds"),
        ("run", "shutdown_seconds"),
        ("run", "workers"),
        ("run", "threads"),
        ("run", "gpus"),
        ("gpu_idle_fraction",),
        ("schema_version",),
    ]
    section.tables.append(figure_rows(summary, paths))
    workflow = summary["workflow"]
    section.tables.append(
        figure_rows(
            summary,
            [("workflow", k) for k in ("tile_size", "stride", "target_mpp", "gflops")],
            header="Workflow",
        )
    )
    models = [[m["key"], m["weights"], m.get("gflops")] for m in workflow["models"]]
    if models:
        section.tables.append(
            Table(["Model", "Weights", "GFLOPs per tile"], models, ["measured"] * len(models))
        )
    workers = [[w, share * 100, "%"] for w, share in summary["utilisation"].items()]
    section.tables.append(
        capped(
            Table(
                ["Worker: busy share of its slots over the run", "Value", "Unit"],
                workers,
                ["measured"] * len(workers),
            ),
            files.get("workers"),
        )
    )
    section.plots = [plots[k] for k in ("timeline",) if k in plots]
    return section


def _slides(summary: dict[str, Any], plots: dict[str, str], files: dict[str, str]) -> list[Section]:
    stats = summary["slides"]
    paths = [("slides", kind, k) for kind in ("tiles_per_slide", "seconds_per_slide") for k in stats[kind]]
    section = Section("Slides", "slides", tables=[figure_rows(summary, paths)])
    section.plots = [plots[k] for k in ("tiles_per_slide",) if k in plots]
    section.links = (
        [("Tiles of every slide (CSV)", files["tiles_per_slide"])] if "tiles_per_slide" in files else []
    )
    failed = summary["failures"]
    failures = Section(
        "Failed slides",
        "failures",
        text="No slide failed."
        if not failed
        else f"{len(failed):,} slides failed: the stage and the first line of the error of each. "
        "`pathopipe status OUT` shows them too; rerun the command to retry them.",
    )
    if failed:
        rows = [[f["slide_id"], f["stage"], f["error"]] for f in failed]
        failures.tables.append(capped(Table(["Slide", "Stage", "Error"], rows), files.get("failures")))
    return [section, failures]


def _storage(summary: dict[str, Any]) -> list[Section]:
    storage = summary["storage"]
    keys = [k for k in storage if k != "feature_bytes_per_slide"]
    paths = [("storage", k) for k in keys] + [
        ("storage", "feature_bytes_per_slide", m) for m in storage["feature_bytes_per_slide"]
    ]
    sections = [
        Section(
            "Storage",
            "storage",
            text="Bytes on disk of the complete slide stores: tiles (everything "
            "but features) and each model's features.",
            tables=[figure_rows(summary, paths)],
        )
    ]
    if summary.get("object_storage"):
        sections.append(
            Section(
                "Object storage",
                "object-storage",
                text=(
                    "Requests and bytes each slide exchanged with object storage (S3), counted by "
                    "the workers on every "
                    "request: slide reads, store writes, metadata. Price egress with the bytes read "
                    "and requests with the "
                    "request counts."
                ),
                tables=[figure_rows(summary, [("object_storage", k) for k in summary["object_storage"]])],
            )
        )
    return sections


def _sizing(summary: dict[str, Any], plots: dict[str, str], files: dict[str, str]) -> Section:
    section = Section(
        "Sizing",
        "sizing",
        text="How the hardware in the summary follows from the measured figures and the assumptions.",
    )
    assumptions = [("assumptions", k) for k in summary["assumptions"]]
    section.tables.append(figure_rows(summary, assumptions, header="Assumption"))
    section.tables.append(
        figure_rows(
            summary,
            [("capacity", k) for k in ("cpu_cores", "gpus", "slides_per_day")],
            header="This run's cluster",
        )
    )
    small = summary.get("small_slides")
    if small:
        section.tables.append(
            figure_rows(
                summary,
                [("small_slides", k) for k in ("median_tiles", "clinical_tiles")],
                header="Slide size check",
            )
        )
    sizing = summary.get("sizing")
    if not sizing:
        section.notes.append("Give `--slides-per-day N` to size a load.")
        return section
    section.notes = [f"{humanize(k)}: {v}." for k, v in sizing["formulas"].items()]
    estimate = "estimate" if sizing["scenario"] == "gpu_estimate" else None
    load = [("sizing", k) for k in ("slides_per_day",)] + [
        ("sizing", "basis", k) for k in ("slides", "median_tiles")
    ]
    section.tables.append(figure_rows(summary, load, header="The load"))
    sized = [("sizing", part, k) for part in ("per_slide", "hardware") for k in sizing[part]]
    title = "Sized (features on GPUs, ESTIMATE)" if estimate else "Sized"
    section.tables.append(figure_rows(summary, sized, header=title, provenance=estimate))
    if "per_slide_as_measured" in sizing:
        measured = [
            ("sizing", p, k) for p in ("per_slide_as_measured", "hardware_as_measured") for k in sizing[p]
        ]
        section.tables.append(figure_rows(summary, measured, header="As measured, features on CPU"))
    if "clinical" in sizing:
        clinical: list[tuple[Any, ...]] = [("sizing", "clinical", "tiles")]
        clinical += [
            ("sizing", "clinical", p, k) for p in ("per_slide", "hardware") for k in sizing["clinical"][p]
        ]
        section.tables.append(
            figure_rows(summary, clinical, header="A clinical-size slide", provenance=estimate or "derived")
        )
    storage = [("sizing", "storage", k) for k in sizing["storage"]]
    section.tables.append(figure_rows(summary, storage, header="Storage"))
    section.plots = [plots[k] for k in ("hardware",) if k in plots]
    section.links = (
        [("Hardware against slides per day (CSV)", files["hardware_curve"])]
        if "hardware_curve" in files
        else []
    )
    return section


def _costs(summary: dict[str, Any], plots: dict[str, str], files: dict[str, str]) -> Section | None:
    costs = summary.get("costs")
    if not costs:
        return None
    names = list(costs)
    section = Section(
        "Costs",
        "costs",
        text="Each option's yearly cost is a formula of the per-slide figures, the "
        "assumptions and the profile's prices.",
    )
    section.notes = [f"{humanize(k)}: {v}." for k, v in COST_FORMULAS.items()]
    fields = []
    for name in names:
        for block, prices in costs[name]["prices"].items():
            for key in prices or {}:
                if (block, key) not in fields:
                    fields.append((block, key))
    rows, tags = [], []
    for block, key in fields:
        label = label_for(("costs", names[0], "prices", block, key))
        assert label is not None
        rows.append([label.text, *((costs[n]["prices"].get(block) or {}).get(key) for n in names)])
        tags.append(
            " / ".join(sorted({"example price" if costs[n]["example_prices"] else "given" for n in names}))
        )
    header = ["Price or figure", *(f"{n} ({costs[n]['currency']})" for n in names)]
    section.tables.append(Table(header, rows, tags, caption="The cost profiles"))
    volume = [[label_for(("costs", n, "slides_per_day")).text, n, costs[n]["slides_per_day"]] for n in names]  # type: ignore[union-attr]
    section.tables.append(Table(["Figure", "Profile", "Value"], volume, ["assumed"] * len(volume)))
    section.plots = [plots[k] for k in ("costs",) if k in plots]
    section.links = (
        [("Yearly cost of each option against slides per day (CSV)", files["cost_curve"])]
        if "cost_curve" in files
        else []
    )
    return section


def detail_sections(summary: dict[str, Any], plots: dict[str, str], files: dict[str, str]) -> list[Section]:
    sections = [
        _time(summary, plots),
        _run(summary, plots, files),
        *_slides(summary, plots, files),
        *_storage(summary),
        _sizing(summary, plots, files),
    ]
    more = (
        _costs(summary, plots, files),
        comparison_section(summary),
        bench_section(summary),
        what_if_section(summary),
    )
    sections += [s for s in more if s]
    return sections


def build_sections(summary: dict[str, Any], plots: dict[str, str], files: dict[str, str]) -> list[Section]:
    """Every section of the report, the decision summary first; ``plots`` (SVG by name) and
    ``files`` (CSV series by name, paths relative to the report) are linked where they belong."""
    return [decision_section(summary), *detail_sections(summary, plots, files)]
