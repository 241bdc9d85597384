"""The conditions that change how far a report's figures can be trusted: random weights, tiles
unlike the model card's recommendation, calibration slides far smaller than clinical ones, GPU
figures estimated from a CPU run, failed slides, example prices, too few tasks for a stable rate.
Each warning says what to do, and the confidence line counts them."""

from __future__ import annotations

from typing import Any

__all__ = ["MIN_WORK_TASKS", "SMALL_SLIDE_SHARE", "confidence", "find_warnings"]

MIN_WORK_TASKS = 20  # fewer work tasks in a stage than this: its rate is not stable
SMALL_SLIDE_SHARE = 0.2  # median tiles under this share of a clinical slide's: "small slides"


def _warning(code: str, severity: str, text: str) -> dict[str, str]:
    return {"code": code, "severity": severity, "text": text}


def _card_mismatches(spec: dict[str, Any] | None, workflow: dict[str, Any]) -> list[str]:
    """The model card's recommendation against the run's tiles (specs recorded with features)."""
    if not spec or not workflow.get("tile_size"):
        return []
    from pathopipe.features import ModelSpec

    try:
        model = ModelSpec.model_validate(spec)
    except ValueError:  # a spec recorded by another version: no recommendation to compare
        return []
    return model.card_mismatches(int(workflow["tile_size"]), workflow.get("target_mpp"))


def find_warnings(summary: dict[str, Any]) -> list[dict[str, str]]:
    """The conditions that change how far the figures can be trusted, each with what to do.
    Severity ``sizing`` (the hardware and costs may be far off), ``price`` or ``use``."""
    found = []
    random = [m["key"] for m in summary["workflow"]["models"] if m["weights"] == "random"]
    if random:
        found.append(
            _warning(
                "random_weights",
                "use",
                f"Features of {', '.join(random)} were computed with random weights: right for measuring "
                "speed, useless for analysis. Give `--weights pretrained` or a weights file for real "
                "features.",
            )
        )
    workflow = summary["workflow"]
    unlike = [text for m in workflow["models"] for text in _card_mismatches(m.get("spec"), workflow)]
    if unlike:
        found.append(
            _warning(
                "unlike_the_card",
                "use",
                f"Tiles unlike what the model cards recommend ({'; '.join(unlike)}): the features are "
                "computed all the same but may not match the models' published results; tile as the "
                "card says (`pathopipe models --details KEY`).",
            )
        )
    small = summary.get("small_slides")
    cohort = (summary.get("sizing") or {}).get("basis", {}).get("kind") == "in the cohort plan"
    if small and small["small"] and not cohort:  # a cohort plan sizes for its own slides
        against = (
            f"median {small['median_tiles']:,.0f} tiles per slide against about {small['clinical_tiles']:,} "
            f"for {small['clinical_tissue_cm2']:g} cm² of tissue (assumed)"
        )
        if small["median_tiles"] == 0:  # blank slides: a capacity of such slides says nothing
            what = (
                f"Most slides measured gave no tiles ({against}): the figures are fixed costs "
                "alone, and the slides a day are of blank slides."
            )
        else:
            what = (
                f"The slides measured are far smaller than a clinical slide: {against}. Fixed costs "
                "weigh more on small slides and the load is extrapolated."
            )
        found.append(
            _warning(
                "small_slides",
                "sizing",
                f"{what} Size on the real cohort with `pathopipe plan WORKFLOW --slides COHORT --json > "
                "plan.json`, then `pathopipe report OUT --cohort plan.json`.",
            )
        )
    sizing = summary.get("sizing") or {}
    if sizing.get("scenario") == "gpu_estimate":
        found.append(
            _warning(
                "gpu_estimated",
                "sizing",
                "The features stage ran on CPU only: its GPU figures are an ESTIMATE (the model's "
                "GFLOPs at an "
                f"assumed {summary['assumptions']['gpu_tflops']:g} TFLOP/s per GPU), not a measurement. "
                "Measure on a GPU node (`pathopipe bench` there) and compare with `--against`.",
            )
        )
    failed = summary["failures"]
    if failed:
        total = summary["run"]["slides"] or len(failed)
        found.append(
            _warning(
                "failed_slides",
                "sizing" if len(failed) > 0.1 * total else "use",
                f"{len(failed)} of {total} slides failed (listed under Failed slides); the figures cover "
                "only the slides that finished.",
            )
        )
    if any(c["example_prices"] for c in (summary.get("costs") or {}).values()):
        found.append(
            _warning(
                "example_prices",
                "price",
                "Prices are EXAMPLE figures (a cost profile with `example: true`), not quotes: replace them "
                "with your own before deciding.",
            )
        )
    few = {n: s["work_tasks"] for n, s in summary["stages"].items() if s["work_tasks"] < MIN_WORK_TASKS}
    if few:
        listed = ", ".join(f"{n} {k}" for n, k in few.items())
        found.append(
            _warning(
                "few_tasks",
                "sizing",
                f"Few work tasks were measured ({listed}; {MIN_WORK_TASKS} or more give a stable rate): "
                "rates may move by tens of percent between runs. Measure a longer run.",
            )
        )
    return found


def confidence(warnings: list[dict[str, str]]) -> dict[str, Any]:
    """A level (high, medium, low) and its reasons: low with two or more sizing warnings."""
    sizing = [w["code"] for w in warnings if w["severity"] == "sizing"]
    price = [w["code"] for w in warnings if w["severity"] == "price"]
    level = "low" if len(sizing) >= 2 else "medium" if sizing or price else "high"
    reasons = {
        "small_slides": "small calibration slides",
        "gpu_estimated": "GPU figures estimated",
        "failed_slides": "many failed slides",
        "few_tasks": "few tasks measured",
        "example_prices": "example prices",
    }
    because = [reasons[c] for c in sizing + price if c in reasons]
    text = f"{level}: " + (
        ", ".join(because) if because else "measured on enough slides and tasks, real prices"
    )
    return {"level": level, "reasons": because, "text": text}
