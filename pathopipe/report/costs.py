"""Cost profiles (``configs/costs/*.yaml``) and the build-versus-buy arithmetic.

Every cost is a formula of measured per-slide figures (core-seconds, GPU-seconds, bytes) and
the profile's prices; :func:`cost_model` returns the numbers with the formulas as text.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pathopipe.errors import ConfigError

SECONDS_PER_DAY = 86_400
HOURS_PER_YEAR = 8_760


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RentPrices(_Model):
    gpu_hour: float = Field(ge=0, description="one GPU, per hour")
    core_hour: float = Field(ge=0, description="one CPU core (vCPU), per hour")
    tb_month: float = Field(ge=0, description="stored data, per TB and month")
    egress_per_tb: float = Field(0.0, ge=0, description="data leaving the cloud, per TB")
    egress_fraction: float = Field(0.0, ge=0, description="share of stored bytes downloaded per year")


class OwnPrices(_Model):
    server_price: float = Field(gt=0)
    gpus_per_server: int = Field(ge=0)
    cores_per_server: int = Field(ge=1)
    amortisation_years: float = Field(gt=0)
    power_kw: float = Field(ge=0, description="average draw of one server")
    kwh_price: float = Field(ge=0)
    operations_share: float = Field(0.25, ge=0, description="yearly operations, share of hardware per year")
    storage_tb_price: float = Field(ge=0, description="one TB of redundant storage, bought")


class CostProfile(_Model):
    """Prices for renting and for owning, and the sizing assumptions."""

    example: bool = Field(False, description="true: example prices, to be replaced by real ones")
    currency: str = "USD"
    rent: RentPrices
    own: OwnPrices
    retention_years: float = Field(10, gt=0)
    target_utilisation: float = Field(0.7, gt=0, le=1)
    peak_factor: float = Field(2.0, ge=1)


def load_costs(path: str | Path) -> CostProfile:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"cost profile not found: {path} (examples: configs/costs/)") from None
    try:
        return CostProfile.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"{path}: invalid cost profile: {problems}") from None


def hardware_for(
    slides_per_day: float, per_slide: dict[str, float], *, peak_factor: float, target_utilisation: float
) -> dict[str, Any]:
    """Cores and GPUs that process ``slides_per_day`` at the peak rate, busy ``target_utilisation``."""
    peak_rate = slides_per_day * peak_factor / SECONDS_PER_DAY  # slides per second at peak
    cores = peak_rate * per_slide["core_seconds"] / target_utilisation
    gpus = peak_rate * per_slide["gpu_seconds"] / target_utilisation
    return {
        "peak_slides_per_second": peak_rate,
        "cpu_cores": math.ceil(cores) if cores > 0 else 0,
        "gpus": math.ceil(gpus) if gpus > 0 else 0,
        "formula": (
            "cores = slides_per_day x peak_factor / 86400 x core_seconds_per_slide / target_utilisation; "
            "GPUs = slides_per_day x peak_factor / 86400 x gpu_seconds_per_slide / target_utilisation "
            "(rounded up)"
        ),
    }


def annual_rent(slides_per_day: float, per_slide: dict[str, float], profile: CostProfile) -> float:
    """Renting: pay per busy hour and per stored TB-month (a year's slides, kept for the retention)."""
    r = profile.rent
    slides = slides_per_day * 365
    hourly = per_slide["core_seconds"] * r.core_hour + per_slide["gpu_seconds"] * r.gpu_hour
    compute = slides * hourly / 3600
    tb_per_year = slides * per_slide["stored_bytes"] / 1e12
    # a year's new data is stored for the retention period: its storage bill, spread per year of intake
    storage = tb_per_year * r.tb_month * 12 * profile.retention_years
    egress = tb_per_year * r.egress_fraction * r.egress_per_tb
    return compute + storage + egress


def annual_own(slides_per_day: float, per_slide: dict[str, float], profile: CostProfile) -> float:
    """Owning: servers sized for the peak, amortised, plus power and operations, plus storage bought."""
    o = profile.own
    hw = hardware_for(slides_per_day, per_slide, peak_factor=profile.peak_factor,
                      target_utilisation=profile.target_utilisation)  # fmt: skip
    by_gpu = math.ceil(hw["gpus"] / o.gpus_per_server) if hw["gpus"] and o.gpus_per_server else 0
    by_core = math.ceil(hw["cpu_cores"] / o.cores_per_server) if hw["cpu_cores"] else 0
    servers = max(by_gpu, by_core, 1 if slides_per_day > 0 else 0)
    hardware = servers * o.server_price / o.amortisation_years
    power = servers * o.power_kw * HOURS_PER_YEAR * o.kwh_price
    tb_per_year = slides_per_day * 365 * per_slide["stored_bytes"] / 1e12
    storage = tb_per_year * o.storage_tb_price  # bought once per year of intake, kept
    return hardware * (1 + o.operations_share) + power + storage


def cost_model(per_slide: dict[str, float], profile: CostProfile, slides_per_day: float) -> dict[str, Any]:
    """Cost per slide and per year, renting and owning, the break-even volume and a cost curve."""
    rent_year = annual_rent(slides_per_day, per_slide, profile)
    own_year = annual_own(slides_per_day, per_slide, profile)
    grid = sorted({*(round(10 ** (k / 20)) for k in range(0, 101)), round(slides_per_day)})
    curve = [{"slides_per_day": n, "rent": annual_rent(n, per_slide, profile),
              "own": annual_own(n, per_slide, profile)} for n in grid if n > 0]  # fmt: skip
    break_even = next((p["slides_per_day"] for p in curve if p["own"] <= p["rent"]), None)
    slides = slides_per_day * 365
    return {
        "example_prices": profile.example,
        "currency": profile.currency,
        "slides_per_day": slides_per_day,
        "rent_per_year": rent_year,
        "own_per_year": own_year,
        "rent_per_slide": rent_year / slides if slides else None,
        "own_per_slide": own_year / slides if slides else None,
        "break_even_slides_per_day": break_even,
        "curve": curve,
        "formulas": {
            "rent": "slides/yr x (core_s x core_hour + gpu_s x gpu_hour)/3600 + TB/yr x tb_month x 12 x "
            "retention_years + TB/yr x egress_fraction x egress_per_tb",
            "own": "servers x server_price / amortisation_years x (1 + operations_share) + servers x "
            "power_kw x 8760 x kwh_price + TB/yr x storage_tb_price; servers = max(GPUs / gpus_per_server, "
            "cores / cores_per_server), sized for the peak",
            "break_even": "smallest slides/day on the curve where owning costs no more than renting",
        },
        "profile": profile.model_dump(mode="json"),
    }
