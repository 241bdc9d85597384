"""Generated benchmark slides, written once and cached under ``benchmarks/.cache``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pathopipe.testing import write_synthetic_slide

CACHE = Path(__file__).resolve().parent / ".cache"


def cached_slide(name: str, **options: Any) -> Path:
    """``CACHE/name``, generated with ``write_synthetic_slide(**options)`` if it is not there yet."""
    CACHE.mkdir(exist_ok=True)
    slide = CACHE / name
    if not slide.exists():
        t0 = time.perf_counter()
        write_synthetic_slide(slide, workers=os.cpu_count(), **options)
        size_mb = slide.stat().st_size / 1e6
        print(f"generated {slide.name} ({size_mb:.0f} MB) in {time.perf_counter() - t0:.0f} s")
    return slide
