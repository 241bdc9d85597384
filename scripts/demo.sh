#!/usr/bin/env bash
# Set up, make sample slides, tile them and extract features on a local Dask cluster, show the results.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup.sh
DEMO=demo-out
mkdir -p "$DEMO/slides"
echo "== sample slides in $DEMO/slides (made once, reused)"
python scripts/make_synthetic_slide.py "$DEMO/slides/large.svs" --width 20000 --height 15000 --seed 11
python scripts/make_synthetic_slide.py "$DEMO/slides/medium.svs" --width 12000 --height 9001 --seed 12
python scripts/make_synthetic_slide.py "$DEMO/slides/small.svs" --width 6001 --height 4003 --seed 13
inputs=("$DEMO/slides")
shopt -s nullglob
for real in ../shared/slides/*.svs; do inputs+=("$real"); done
rm -rf "$DEMO/run"
echo "== pathopipe tile ${inputs[*]} --out $DEMO/run -c workflows/demo.yaml"
pathopipe tile "${inputs[@]}" --out "$DEMO/run" -c workflows/demo.yaml
echo
echo "== pathopipe extract $DEMO/run --model timm/resnet18 (random weights, CPU)"
pathopipe extract "$DEMO/run" --model timm/resnet18 --device cpu --workers 1
echo
echo "== outputs"
echo "manifest: $DEMO/run/manifest.csv   run info: $DEMO/run/run.json   features: $DEMO/run/features-timm-resnet18.csv"
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
