"""The decision summary: the question, the answer per option (hardware, storage, cost per
year and per slide, break-evens), a confidence line and the warnings that change the decision.

Built from the rest of the summary only; each row names the figure it shows (``source``, a
path into ``summary.json``) and its provenance:

- ``measured``: this run's metrics, manifest or stores;
- ``derived``: a formula of measured figures and assumptions (shown in the detail sections);
- ``estimate``: a what-if (a model moved to GPUs at an assumed speed), never a measurement;
- ``assumed``: a sizing assumption (``pathopipe report`` options and their defaults);
- ``example price``: computed from a cost profile marked ``example: true``;
- ``given``: a price from a cost profile with real prices.
"""

from __future__ import annotations

from typing import Any

from pathopipe.report.checks import confidence, find_warnings
from pathopipe.report.costs import OPTIONS

__all__ = ["OPTION_NAMES", "PROVENANCE", "build_decision"]

PROVENANCE = ("measured", "derived", "estimate", "assumed", "example price", "given")
OPTION_NAMES = {"buy": "Buy a service", "rent": "Rent (cloud)", "own": "Own servers"}


def _row(
    key: str, label: str, value: Any, unit: str, provenance: str, source: str | None, scale: float = 1.0
) -> dict[str, Any]:
    """One figure: ``value`` is the figure at ``source`` (a path into the summary; None for a
    sentence made of several), shown as ``value x scale`` in ``unit``."""
    return {
        "key": key,
        "label": label,
        "value": value,
        "unit": unit,
        "scale": scale,
        "provenance": provenance,
        "source": source,
    }


def _question(summary: dict[str, Any]) -> str:
    workflow = summary["workflow"]
    sizing = summary.get("sizing")
    models = ", ".join(m["key"] for m in workflow["models"]) or "none"
    geometry = f"{workflow['tile_size']} px tiles at {workflow['target_mpp']} µm/px"
    volume = f"{sizing['slides_per_day']:,.0f} slides a day" if sizing else "slides"
    return f"What does it take to process {volume} with this workflow ({geometry}; models: {models})?"


def _basis_text(summary: dict[str, Any]) -> str:
    sizing = summary.get("sizing")
    if not sizing:
        return (
            "No target volume given: `pathopipe report OUT --slides-per-day N --costs "
            "PROFILE.yaml` sizes and prices one."
        )
    basis = sizing["basis"]
    text = (
        f"Sized from {_count(basis['slides'], 'slide')} {basis['kind']} "
        f"(median {basis['median_tiles']:,.0f} tiles "
        f"per slide{', ' + basis['source'] if basis.get('source') else ''})"
    )
    if sizing["scenario"] == "gpu_estimate":
        text += "; features on GPUs estimated from the CPU measurement"
    return text + "."


def _hardware_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    sizing = summary["sizing"]
    tag = "estimate" if sizing["scenario"] == "gpu_estimate" else "derived"
    hw = sizing["hardware"]
    rows = [
        _row("gpus", "GPUs needed", hw["gpus"], "GPUs", tag, "sizing/hardware/gpus"),
        _row("cpu_cores", "CPU cores needed", hw["cpu_cores"], "cores", tag, "sizing/hardware/cpu_cores"),
        _row(
            "peak",
            "Peak rate to sustain",
            hw["peak_slides_per_hour"],
            "slides/hour",
            "derived",
            "sizing/hardware/peak_slides_per_hour",
        ),
    ]
    if "hardware_as_measured" in sizing:
        measured = sizing["hardware_as_measured"]
        rows.append(
            _row(
                "cpu_cores_as_measured",
                "CPU cores on CPUs only, as measured",
                measured["cpu_cores"],
                "cores",
                "derived",
                "sizing/hardware_as_measured/cpu_cores",
            )
        )
    if sizing.get("clinical"):
        clinical = sizing["clinical"]
        rows.append(
            _row(
                "clinical_gpus",
                f"GPUs for clinical-size slides (~{clinical['tiles']:,} tiles)",
                clinical["hardware"]["gpus"],
                "GPUs",
                "estimate",
                "sizing/clinical/hardware/gpus",
            )
        )
        rows.append(
            _row(
                "clinical_cores",
                f"CPU cores for clinical-size slides (~{clinical['tiles']:,} tiles)",
                clinical["hardware"]["cpu_cores"],
                "cores",
                "estimate",
                "sizing/clinical/hardware/cpu_cores",
            )
        )
    if sizing.get("bottleneck"):
        b = sizing["bottleneck"]
        rows.append(_row("bottleneck", "Bottleneck", f"{b['stage']} stage ({b['resource']})", "", tag, None))
        rows.append(_row("moves_it", "What moves it", b["advice"], "", "derived", "sizing/bottleneck/advice"))
    return rows


def _storage_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    sizing = summary["sizing"]
    measured = "measured" if sizing["basis"]["kind"] == "measured here" else "derived"
    years = summary["assumptions"]["retention_years"]
    return [
        _row(
            "stored_per_slide",
            "Stored per slide",
            sizing["per_slide"]["stored_bytes"],
            "MB",
            measured,
            "sizing/per_slide/stored_bytes",
            1e-6,
        ),
        _row(
            "storage_year",
            "Storage per year",
            sizing["storage"]["bytes_per_year"],
            "TB",
            "derived",
            "sizing/storage/bytes_per_year",
            1e-12,
        ),
        _row(
            "storage_retained",
            f"Storage over {years:g} years retention",
            sizing["storage"]["bytes_retained"],
            "TB",
            "derived",
            "sizing/storage/bytes_retained",
            1e-12,
        ),
    ]


def _cost_table(summary: dict[str, Any]) -> dict[str, Any]:
    costs = summary["costs"]
    scenario = summary["sizing"]["scenario"]
    names = list(costs)
    tags = {
        n: "example price"
        if costs[n]["example_prices"]
        else "estimate"
        if scenario == "gpu_estimate"
        else "derived"
        for n in names
    }
    rows = []

    def add(
        key: str,
        label: str,
        unit: str,
        values: dict[str, Any],
        path: str,
        tag: str | None = None,
        scale: float = 1.0,
    ) -> None:
        rows.append(
            {
                "key": key,
                "label": label,
                "unit": unit,
                "scale": scale,
                "values": values,
                "source": path,
                "provenance": {n: tag or tags[n] for n in names},
            }
        )

    for option in OPTIONS:
        per_year = {n: costs[n]["per_year"][option] for n in names}
        if all(v is None for v in per_year.values()):
            continue
        add(
            f"{option}_per_year",
            f"{OPTION_NAMES[option]}, per year",
            "a year",
            per_year,
            f"costs/*/per_year/{option}",
        )
        add(
            f"{option}_per_slide",
            f"{OPTION_NAMES[option]}, per slide",
            "a slide",
            {n: costs[n]["per_slide"][option] for n in names},
            f"costs/*/per_slide/{option}",
        )
    add("servers", "Servers to own", "servers", {n: costs[n]["servers"] for n in names}, "costs/*/servers")
    add(
        "cheapest",
        "Cheapest at this volume",
        "",
        {n: costs[n]["cheapest"] for n in names},
        "costs/*/cheapest",
    )
    pairs = [tuple(b["options"]) for b in costs[names[0]]["break_evens"]]
    for i, (a, b) in enumerate(pairs):
        add(
            f"break_even_{a}_{b}",
            f"Break-even, {a} and {b}",
            "slides/day",
            {
                n: costs[n]["break_evens"][i]["slides_per_day"] if i < len(costs[n]["break_evens"]) else None
                for n in names
            },
            f"costs/*/break_evens/{i}/slides_per_day",
        )
    add(
        "energy",
        "Energy per slide",
        "Wh",
        {n: costs[n]["energy_per_slide"]["kwh"] for n in names},
        "costs/*/energy_per_slide/kwh",
        "derived",
        1000.0,
    )
    if any(costs[n]["energy_per_slide"]["gco2"] is not None for n in names):
        add(
            "co2",
            "CO2 per slide",
            "g",
            {n: costs[n]["energy_per_slide"]["gco2"] for n in names},
            "costs/*/energy_per_slide/gco2",
            "derived",
        )
    return {"profiles": [{"name": n, "currency": costs[n]["currency"]} for n in names], "rows": rows}


def _break_even_text(summary: dict[str, Any]) -> list[str]:
    """One line per profile: where each pair of options costs the same, and which wins above."""
    lines = []
    for name, cost in (summary.get("costs") or {}).items():
        parts, never = [], []
        for b in cost["break_evens"]:
            a, c = b["options"]
            if b["slides_per_day"] is None:
                never.append(f"{a} and {c}")
            else:
                parts.append(
                    f"{a} = {c} at {b['slides_per_day']:,.0f} a day ({b['cheaper_above']} cheaper above)"
                )
        if never:
            parts.append(f"{' nor '.join(never)} never cross (1 to 100,000 a day)")
        lines.append(f"Break-even, {name}: " + "; ".join(parts) + ".")
    return lines


def _count(n: int, thing: str) -> str:
    return f"{n:,} {thing}{'' if n == 1 else 's'}"


def _answer(summary: dict[str, Any]) -> str:
    """The answer in one sentence: the hardware, and the cheapest option per profile."""
    sizing = summary["sizing"]
    hw = sizing["hardware"]
    estimate = " (GPU estimate)" if sizing["scenario"] == "gpu_estimate" else ""
    text = f"{_count(hw['gpus'], 'GPU')} and {_count(hw['cpu_cores'], 'CPU core')} at the peak{estimate}"
    cheapest = []
    for name, cost in (summary.get("costs") or {}).items():
        option = cost["cheapest"]
        if option:
            per_year, per_slide = cost["per_year"][option], cost["per_slide"][option]
            cheapest.append(
                f"{OPTION_NAMES[option].lower()} with {name} ({per_year:,.0f} {cost['currency']} a year, "
                f"{per_slide:,.3g} per slide)"
            )
    if cheapest:
        text += "; cheapest: " + ", ".join(cheapest)
    return f"Answer: {text}."


def build_decision(summary: dict[str, Any]) -> dict[str, Any]:
    """The first section of the report, from the other parts of ``summary``."""
    warnings = find_warnings(summary)
    decision: dict[str, Any] = {
        "question": _question(summary),
        "basis": _basis_text(summary),
        "capacity": [
            _row(
                "run_capacity",
                "Slides a day this run's cluster sustains",
                summary["capacity"]["slides_per_day"],
                "slides/day",
                "derived",
                "capacity/slides_per_day",
            ),
        ],
        "warnings": warnings,
        "confidence": confidence(warnings),
    }
    if summary.get("sizing"):
        decision["hardware"] = _hardware_rows(summary)
        decision["storage"] = _storage_rows(summary)
        a = summary["assumptions"]
        decision["assumptions"] = (
            f"peak hour {a['peak_factor']:g}× the average rate, hardware {a['target_utilisation']:.0%} busy "
            f"at the peak, outputs kept {a['retention_years']:g} years"
        )
    if summary.get("costs"):
        decision["costs"] = _cost_table(summary)
        decision["break_evens"] = _break_even_text(summary)
    if summary.get("sizing"):
        decision["answer"] = _answer(summary)
    return decision
