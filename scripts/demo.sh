#!/usr/bin/env bash
# Set up, make sample slides, run the demo workflow (tiles + features) on a local Dask cluster, show the results.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup.sh
DEMO=demo-out
mkdir -p "$DEMO/slides"
echo "== sample slides in $DEMO/slides (made once, reused)"
python scripts/make_synthetic_slide.py "$DEMO/slides/large.svs" --width 20000 --height 15000 --seed 11
python scripts/make_synthetic_slide.py "$DEMO/slides/medium.svs" --width 12000 --height 9001 --seed 12
python scripts/make_synthetic_slide.py "$DEMO/slides/small.svs" --width 6001 --height 4003 --seed 13
inputs=(--slides "$DEMO/slides")
shopt -s nullglob
for real in ../shared/slides/*.svs; do inputs+=(--slides "$real"); done
rm -rf "$DEMO/run"
echo "== pathopipe run workflows/demo.yaml ${inputs[*]} --out $DEMO/run"
echo "   (tiling, then resnet18 features with random weights on the CPU; one Dask computation)"
pathopipe run workflows/demo.yaml "${inputs[@]}" --out "$DEMO/run"
echo
echo "== pathopipe status $DEMO/run"
pathopipe status "$DEMO/run"
echo
echo "== outputs"
echo "manifest: $DEMO/run/manifest.csv   run info: $DEMO/run/run.json"
python - "$DEMO/run" <<'PY'
import sys, zarr
from pathlib import Path
for store in sorted(Path(sys.argv[1], "slides").glob("*.zarr")):
    g = zarr.open_group(store, mode="r")
    a = g.attrs
    feats = g["features/timm-resnet18/features"] if "features/timm-resnet18" in g else None
    shape = "none" if feats is None else f"{feats.shape} {feats.dtype}"
    print(f"{store.name:28s} tiles {g['coords'].shape[0]:6d}  {a['tile_size']} px @ {a['effective_mpp']:.3f} um/px "
          f"from level {a['read_level']} (read {a['read_size']} px)  complete={a['complete']}  features {shape}")
PY
