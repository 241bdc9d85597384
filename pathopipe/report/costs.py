"""Cost profiles (``configs/costs/*.yaml``) and the buy / rent / own arithmetic.

Every cost is a formula of a per-slide basis (core-seconds, GPU-seconds, stored bytes; see
:mod:`pathopipe.report.sizing`), the sizing assumptions and the profile's prices:

- **buy**: a service priced per slide, at least its yearly minimum; it keeps its own outputs;
- **rent**: pay per busy core-hour and GPU-hour, and per stored TB-month for the retention;
- **own**: servers sized for the peak, amortised, plus operations, power and storage bought.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pathopipe.errors import ConfigError
from pathopipe.report.sizing import SizingAssumptions, hardware_for

if TYPE_CHECKING:
    from pathopipe.report.forecast import Calibration

__all__ = [
    "OPTIONS",
    "CostProfile",
    "annual_costs",
    "break_evens",
    "cost_model",
    "energy_per_slide",
    "forecast_cost",
    "load_costs",
    "servers_for",
]

HOURS_PER_YEAR = 8_760
OPTIONS = ("buy", "rent", "own")  # the three ways to get the work done, in the order shown
CURVE = sorted({round(10 ** (k / 20)) for k in range(0, 101)})  # 1 to 100,000 slides a day
SIZING_KEYS = {
    "peak_factor": "--peak-factor",
    "target_utilisation": "--utilisation",
    "retention_years": "--retention-years",
}

FORMULAS = {
    "buy": "max(price per slide × slides per year, minimum per year); the service keeps its outputs",
    "rent": "slides per year × (core-seconds × core-hour price + GPU-seconds × GPU-hour price) ÷ 3,600 + "
    "TB per year × TB-month price × 12 × retention years + TB per year × egress share × egress price; "
    "compute is paid per busy hour (instances run only while there is work)",
    "own": "servers × server price ÷ amortisation years × (1 + operations share) + servers × power kW × "
    "8,760 × kWh price + TB per year × storage TB price; servers = the most of GPUs ÷ GPUs per server "
    "and cores ÷ cores per server, sized for the peak",
    "break_even": "the volume where two options cost the same per year, found on 1 to 100,000 slides a "
    "day; the cheaper one above it is named",
    "energy": "(core-seconds × W per busy core + GPU-seconds × W per busy GPU) × PUE ÷ 3.6 million; CO2 "
    "= kWh × grid intensity",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BuyPrices(_Model):
    price_per_slide: float = Field(ge=0, description="the service's price for one slide")
    minimum_per_year: float = Field(0.0, ge=0, description="the contract's yearly minimum")


class RentPrices(_Model):
    gpu_hour: float = Field(ge=0, description="one GPU, per hour")
    core_hour: float = Field(ge=0, description="one CPU core (vCPU), per hour")
    tb_month: float = Field(ge=0, description="stored data, per TB and month")
    egress_per_tb: float = Field(0.0, ge=0, description="data leaving the cloud, per TB")
    egress_fraction: float = Field(0.0, ge=0, description="share of stored bytes downloaded per year")


class OwnPrices(_Model):
    server_price: float = Field(gt=0, description="one server")
    gpus_per_server: int = Field(ge=0, description="GPUs in one server")
    cores_per_server: int = Field(ge=1, description="CPU cores in one server")
    amortisation_years: float = Field(gt=0, description="years the hardware is written off over")
    power_kw: float = Field(ge=0, description="average draw of one server, kW")
    kwh_price: float = Field(ge=0, description="one kWh")
    operations_share: float = Field(
        0.25, ge=0, description="yearly operations, share of the hardware cost per year"
    )
    storage_tb_price: float = Field(ge=0, description="one TB of redundant storage, bought")


class EnergyFigures(_Model):
    core_watts: float = Field(ge=0, description="draw of one busy CPU core, W")
    gpu_watts: float = Field(ge=0, description="draw of one busy GPU, W")
    pue: float = Field(1.0, ge=1, description="power usage effectiveness of the data centre")
    grid_gco2_per_kwh: float | None = Field(None, ge=0, description="grid carbon intensity, g CO2 per kWh")


class CostProfile(_Model):
    """Prices for buying a service, renting and owning; named after its file."""

    name: str = Field("profile", description="the profile's name (its file's stem)")
    example: bool = Field(False, description="true: example prices, to be replaced by real ones")
    currency: str = "USD"
    buy: BuyPrices | None = None
    rent: RentPrices
    own: OwnPrices
    energy: EnergyFigures | None = None


def load_costs(path: str | Path) -> CostProfile:
    """A cost profile from YAML, named after the file's stem unless it says ``name:``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"cost profile not found: {path} (examples: configs/costs/)") from None
    moved = sorted(set(data) & set(SIZING_KEYS))
    if moved:
        flags = ", ".join(f"{k} -> {SIZING_KEYS[k]}" for k in moved)
        raise ConfigError(
            f"{path}: {', '.join(moved)} are sizing assumptions, no longer prices: remove them from the "
            f"profile and give them to `pathopipe report` ({flags})"
        )
    data.setdefault("name", path.stem)
    try:
        return CostProfile.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"{path}: invalid cost profile: {problems}") from None


def servers_for(hardware: dict[str, Any], own: OwnPrices) -> int:
    """Servers of the profile's shape that hold ``hardware``'s GPUs and cores."""
    by_gpu = (
        math.ceil(hardware["gpus"] / own.gpus_per_server) if hardware["gpus"] and own.gpus_per_server else 0
    )
    by_core = math.ceil(hardware["cpu_cores"] / own.cores_per_server) if hardware["cpu_cores"] else 0
    if hardware["gpus"] and not own.gpus_per_server:
        raise ConfigError("the load needs GPUs but the cost profile's own.gpus_per_server is 0")
    return max(by_gpu, by_core, 1 if hardware["gpus"] or hardware["cpu_cores"] else 0)


def annual_costs(
    slides_per_day: float, basis: dict[str, float], profile: CostProfile, assumptions: SizingAssumptions
) -> dict[str, float | None]:
    """Cost per year of each option at ``slides_per_day`` (buy None without a ``buy:`` block)."""
    slides = slides_per_day * 365
    tb_per_year = slides * basis["stored_bytes"] / 1e12
    buy = None
    if profile.buy is not None:
        buy = max(profile.buy.price_per_slide * slides, profile.buy.minimum_per_year if slides else 0.0)
    r = profile.rent
    compute = slides * (basis["core_seconds"] * r.core_hour + basis["gpu_seconds"] * r.gpu_hour) / 3600
    # a year's new data is stored for the retention period: its storage bill, spread per year of intake
    rent = compute + tb_per_year * (
        r.tb_month * 12 * assumptions.retention_years + r.egress_fraction * r.egress_per_tb
    )
    o = profile.own
    servers = servers_for(hardware_for(slides_per_day, basis, assumptions), o) if slides else 0
    hardware = servers * o.server_price / o.amortisation_years
    power = servers * o.power_kw * HOURS_PER_YEAR * o.kwh_price
    own = hardware * (1 + o.operations_share) + power + tb_per_year * o.storage_tb_price
    return {"buy": buy, "rent": rent, "own": own}


def _crossing(low: float, high: float, gap: Any) -> float:
    """Bisection on ``gap`` (a function of slides per day whose sign differs at the ends)."""
    sign = gap(low) > 0
    for _ in range(40):
        middle = math.sqrt(low * high)
        if (gap(middle) > 0) == sign:
            low = middle
        else:
            high = middle
    return high


def break_evens(
    basis: dict[str, float], profile: CostProfile, assumptions: SizingAssumptions
) -> list[dict[str, Any]]:
    """For each pair of options, the first volume (slides per day, 1 to 100,000) where their
    yearly costs cross, and the option cheaper above it; None where they do not cross."""
    found = []
    names = [n for n in OPTIONS if n != "buy" or profile.buy is not None]
    for i, a in enumerate(names):
        for b in names[i + 1 :]:

            def gap(n: float, a: str = a, b: str = b) -> float:
                costs = annual_costs(n, basis, profile, assumptions)
                return float(costs[a] or 0.0) - float(costs[b] or 0.0)

            crossing = None
            for low, high in itertools.pairwise(CURVE):
                if (gap(low) > 0) != (gap(high) > 0):
                    crossing = _crossing(low, high, gap)
                    break
            above = None
            if crossing is not None:
                above = b if gap(crossing * 1.01) > 0 else a
            found.append({"options": [a, b], "slides_per_day": crossing, "cheaper_above": above})
    return found


def energy_per_slide(basis: dict[str, float], energy: EnergyFigures | None) -> dict[str, float | None]:
    """kWh (and g CO2 when the grid intensity is given) per slide, from busy seconds."""
    if energy is None:
        return {"kwh": None, "gco2": None}
    joules = (
        basis["core_seconds"] * energy.core_watts + basis["gpu_seconds"] * energy.gpu_watts
    ) * energy.pue
    kwh = joules / 3.6e6
    gco2 = kwh * energy.grid_gco2_per_kwh if energy.grid_gco2_per_kwh is not None else None
    return {"kwh": kwh, "gco2": gco2}


def cost_model(
    basis: dict[str, float], profile: CostProfile, slides_per_day: float, assumptions: SizingAssumptions
) -> dict[str, Any]:
    """Per option: cost per year and per slide at ``slides_per_day``; the servers owning needs;
    the cheapest option; the break-evens; energy per slide; the cost curve (1 to 100,000 a day)."""
    yearly = annual_costs(slides_per_day, basis, profile, assumptions)
    slides = slides_per_day * 365
    priced = {k: v for k, v in yearly.items() if v is not None}
    curve = [
        {"slides_per_day": n, **annual_costs(n, basis, profile, assumptions)}
        for n in sorted({*CURVE, round(slides_per_day)})
        if n > 0
    ]
    return {
        "name": profile.name,
        "currency": profile.currency,
        "example_prices": profile.example,
        "slides_per_day": slides_per_day,
        "per_year": yearly,
        "per_slide": {k: (v / slides if v is not None and slides else None) for k, v in yearly.items()},
        "servers": servers_for(hardware_for(slides_per_day, basis, assumptions), profile.own),
        "cheapest": min(priced, key=lambda k: priced[k]) if priced else None,
        "break_evens": break_evens(basis, profile, assumptions),
        "energy_per_slide": energy_per_slide(basis, profile.energy),
        "curve": curve,
        "prices": profile.model_dump(mode="json", exclude={"name", "example", "currency"}),
    }


def forecast_cost(result: dict[str, Any], calibration: Calibration, profile: CostProfile) -> dict[str, Any]:
    """What running the planned slides would cost when renting, from the forecast's slot-seconds
    (an estimate from a forecast, at the profile's prices)."""
    rent = profile.rent
    core_seconds, gpu_seconds = calibration.resources(result["predicted_slot_seconds"])
    compute = core_seconds / 3600 * rent.core_hour + gpu_seconds / 3600 * rent.gpu_hour
    storage_month = result["predicted_bytes"] / 1e12 * rent.tb_month
    return {
        "estimate": True,
        "example_prices": profile.example,
        "currency": profile.currency,
        "core_hours": core_seconds / 3600,
        "gpu_hours": gpu_seconds / 3600,
        "compute": compute,
        "storage_per_month": storage_month,
        "formula": "compute = core-seconds / 3600 x core_hour + GPU-seconds / 3600 x gpu_hour (a stage's "
        "slot-seconds x the CPU cores its tasks keep busy; a GPU stage's slot-seconds are GPU-seconds); "
        "storage per month = predicted bytes / 1e12 x tb_month",
    }
