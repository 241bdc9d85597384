"""Shared fixtures: generated slides (made once per session) and a real local Dask cluster."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from pathopipe.testing import SyntheticSlide, write_synthetic_slide

SHARED_SLIDES = Path(__file__).resolve().parents[1].parent / "shared" / "slides"
REAL_SLIDE = SHARED_SLIDES / "cmu-1-small-region.svs"


@pytest.fixture(scope="session")
def slide_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("slides")


@pytest.fixture(scope="session")
def aperio_slide(slide_dir: Path) -> SyntheticSlide:
    """Aperio SVS, 0.25 µm/px, levels 4x and 16x with non-integer downsamples (6001 x 4003)."""
    return write_synthetic_slide(slide_dir / "aperio.svs", width=6001, height=4003, seed=1, workers=2)


@pytest.fixture(scope="session")
def generic_slide(slide_dir: Path) -> SyntheticSlide:
    return write_synthetic_slide(
        slide_dir / "generic.tif", width=3000, height=2200, seed=2, layout="generic", workers=1
    )


@pytest.fixture(scope="session")
def nompp_slide(slide_dir: Path) -> SyntheticSlide:
    return write_synthetic_slide(
        slide_dir / "nompp.svs", width=2500, height=2000, seed=3, mpp=None, workers=1
    )


@pytest.fixture(scope="session")
def blank_slide(slide_dir: Path) -> SyntheticSlide:
    return write_synthetic_slide(slide_dir / "blank.svs", width=2048, height=1536, islands=0, workers=1)


@pytest.fixture(scope="session")
def corrupt_slide(slide_dir: Path, aperio_slide: SyntheticSlide) -> Path:
    """The aperio slide truncated to a third: the header is fine, tile data is missing."""
    data = aperio_slide.path.read_bytes()
    path = slide_dir / "bad" / "truncated.svs"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data[: len(data) // 3])
    return path


@pytest.fixture(scope="session")
def not_a_slide(slide_dir: Path) -> Path:
    path = slide_dir / "bad" / "notes.svs"
    path.parent.mkdir(exist_ok=True)
    path.write_text("this is a text file named like a slide\n")
    return path


@pytest.fixture(scope="session")
def real_slide() -> Path:
    if not REAL_SLIDE.exists():
        pytest.skip(f"real slide not available at {REAL_SLIDE}")
    return REAL_SLIDE


@pytest.fixture(scope="session")
def dask_client():
    """A real LocalCluster: two worker processes on loopback."""
    from pathopipe.config import ClusterConfig
    from pathopipe.parallel import local_client

    with local_client(ClusterConfig(n_workers=2, dashboard=False)) as client:
        yield client


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    # caches pathopipe writes (resolved timm specs) go to a folder of this session, not ~/.cache
    os.environ.setdefault("PATHOPIPE_CACHE", tempfile.mkdtemp(prefix="pathopipe-test-cache-"))
