"""Fixtures of the model preset tests: one generated slide tiled for them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pathopipe.cli.app import app
from pathopipe.testing import write_synthetic_slide


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """A generated slide tiled at 0.5 µm/px into 224 px and into 256 px tiles."""
    folder = tmp_path_factory.mktemp("cards")
    slide = write_synthetic_slide(folder / "s.svs", width=1800, height=1400, seed=21, workers=1).path
    outs = {}
    for size in (224, 256):
        out = folder / f"out{size}"
        args = [
            "tile",
            str(slide),
            "--out",
            str(out),
            "--workers",
            "1",
            "--no-progress",
            "--set",
            "tiling.target_mpp=0.5",
            "--set",
            f"tiling.tile_size={size}",
            "--set",
            "tiling.min_tissue_fraction=0.2",
        ]
        ran = CliRunner().invoke(app, args)
        assert ran.exit_code == 0, ran.output
        outs[size] = out
    return outs
