"""The buy / rent / own arithmetic, the break-evens and energy, against hand-computed figures."""

from __future__ import annotations

import pytest

from pathopipe.errors import ConfigError
from pathopipe.report import SizingAssumptions, load_costs
from pathopipe.report.costs import CostProfile, annual_costs, break_evens, cost_model, energy_per_slide
from pathopipe.report.sizing import capacity_of, hardware_for

PROFILE = CostProfile.model_validate(
    {
        "name": "test",
        "currency": "EUR",
        "buy": {"price_per_slide": 5.0, "minimum_per_year": 50_000},
        "rent": {
            "gpu_hour": 3.0,
            "core_hour": 0.05,
            "tb_month": 20.0,
            "egress_per_tb": 100.0,
            "egress_fraction": 0.5,
        },
        "own": {
            "server_price": 200_000,
            "gpus_per_server": 4,
            "cores_per_server": 64,
            "amortisation_years": 5,
            "power_kw": 5.0,
            "kwh_price": 0.10,
            "operations_share": 0.2,
            "storage_tb_price": 200,
        },
        "energy": {"core_watts": 10, "gpu_watts": 500, "pue": 1.5, "grid_gco2_per_kwh": 300},
    }
)
BASIS = {"core_seconds": 600.0, "gpu_seconds": 120.0, "stored_bytes": 2e9, "tiles": 20_000.0}
ASSUMED = SizingAssumptions(peak_factor=2, target_utilisation=0.5, retention_years=5)


def test_each_option_follows_its_formula():
    n = 1000  # slides a day
    costs = annual_costs(n, BASIS, PROFILE, ASSUMED)
    slides = n * 365
    assert costs["buy"] == pytest.approx(5.0 * slides)
    tb = slides * 2e9 / 1e12  # 730 TB a year
    compute = slides * (600 * 0.05 + 120 * 3.0) / 3600
    assert costs["rent"] == pytest.approx(compute + tb * 20 * 12 * 5 + tb * 0.5 * 100)
    # at the peak: 1000 x 2 / 86400 slides/s; cores = that x 600 / 0.5 = 27.8 -> 28; GPUs x 120 -> 5.56 -> 6
    hw = hardware_for(n, BASIS, ASSUMED)
    assert (hw["cpu_cores"], hw["gpus"]) == (28, 6)
    servers = 2  # 6 GPUs / 4 per server
    own = servers * 200_000 / 5 * 1.2 + servers * 5.0 * 8760 * 0.10 + tb * 200
    assert costs["own"] == pytest.approx(own)
    # the buy minimum binds on small volumes
    assert annual_costs(10, BASIS, PROFILE, ASSUMED)["buy"] == 50_000
    # capacity is the inverse of sizing: the hardware for N sustains at least N
    assert capacity_of(hw["cpu_cores"], hw["gpus"], BASIS, ASSUMED) >= n


def test_break_evens_are_where_the_costs_cross():
    found = break_evens(BASIS, PROFILE, ASSUMED)
    assert [tuple(b["options"]) for b in found] == [("buy", "rent"), ("buy", "own"), ("rent", "own")]
    for b in found:
        a, c = b["options"]
        volume = b["slides_per_day"]
        if volume is None:
            continue
        below = annual_costs(volume * 0.98, BASIS, PROFILE, ASSUMED)
        above = annual_costs(volume * 1.02, BASIS, PROFILE, ASSUMED)
        assert (below[a] - below[c]) * (above[a] - above[c]) <= 0  # the order flips there
        cheaper = a if above[a] < above[c] else c
        assert b["cheaper_above"] == cheaper
    model = cost_model(BASIS, PROFILE, 1000, ASSUMED)
    per_year = model["per_year"]
    assert model["cheapest"] == min(per_year, key=lambda k: per_year[k])
    assert model["per_slide"]["rent"] == pytest.approx(per_year["rent"] / 365_000)
    assert model["curve"][0]["slides_per_day"] == 1 and model["curve"][-1]["slides_per_day"] == 100_000


def test_energy_per_slide():
    energy = energy_per_slide(BASIS, PROFILE.energy)
    kwh = (600 * 10 + 120 * 500) * 1.5 / 3.6e6
    assert energy["kwh"] == pytest.approx(kwh) and energy["gco2"] == pytest.approx(kwh * 300)
    assert energy_per_slide(BASIS, None) == {"kwh": None, "gco2": None}


def test_profiles_are_named_by_their_file_and_sizing_keys_are_refused(tmp_path):
    path = tmp_path / "my-hospital.yaml"
    path.write_text(
        "rent: {gpu_hour: 1, core_hour: 0.1, tb_month: 10}\nown: {server_price: 1, gpus_per_server: 1, "
        "cores_per_server: 1, amortisation_years: 1, power_kw: 1, kwh_price: 1, storage_tb_price: 1}\n"
    )
    profile = load_costs(path)
    assert profile.name == "my-hospital" and profile.buy is None
    assert annual_costs(10, BASIS, profile, ASSUMED)["buy"] is None
    assert [tuple(b["options"]) for b in break_evens(BASIS, profile, ASSUMED)] == [("rent", "own")]
    path.write_text(path.read_text() + "target_utilisation: 0.5\n")
    with pytest.raises(ConfigError, match="--utilisation"):
        load_costs(path)
