#!/usr/bin/env python
"""Write a synthetic Aperio-style (or generic) whole-slide TIFF; skips files that exist."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pathopipe.testing import write_synthetic_slide


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("--mpp", type=float, default=0.25, help="µm/px; 0 writes no resolution metadata")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=["aperio", "generic"], default="aperio")
    parser.add_argument("--blank", action="store_true", help="no tissue")
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    if args.path.exists() and not args.overwrite:
        print(f"{args.path} exists; kept")
        return
    t0 = time.perf_counter()
    slide = write_synthetic_slide(
        args.path,
        width=args.width,
        height=args.height,
        mpp=args.mpp or None,
        seed=args.seed,
        layout=args.layout,
        islands=0 if args.blank else None,
        tile_size=args.tile_size,
        workers=args.workers,
    )
    size = args.path.stat().st_size / 1e6
    print(
        f"{slide.path}: {slide.width} x {slide.height} px, levels {slide.level_dimensions}, "
        f"{size:.1f} MB in {time.perf_counter() - t0:.1f} s"
    )


if __name__ == "__main__":
    main()
