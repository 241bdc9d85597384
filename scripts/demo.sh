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
echo "== pathopipe qc / pack / verify $DEMO/run  (QC pictures; the cohort store for training; a read-only check)"
pathopipe qc "$DEMO/run"
pathopipe pack "$DEMO/run"
pathopipe verify "$DEMO/run"
python - "$DEMO/run" <<'PY'
import sys
import pathopipe
from pathopipe.loader.torch import FeatureBagDataset

run = pathopipe.open_run(sys.argv[1])
bags = FeatureBagDataset(run, "timm-resnet18")
bag = bags[0]
print(f"  open_run: {len(run.slide_ids)} slides, models {run.models}; first bag {bag['slide_id']}: "
      f"features {tuple(bag['features'].shape)}, coords {tuple(bag['coords'].shape)} ({bags.cohort.source} cohort)")
PY
echo
echo "== outputs"
echo "manifest: $DEMO/run/manifest.csv   run info: $DEMO/run/run.json   metrics: $DEMO/run/metrics.parquet"
python - "$DEMO/run" <<'PY'
import sys, zarr
from pathlib import Path
for store in sorted(Path(sys.argv[1], "slides").glob("*.zarr")):
    g = zarr.open_group(store, mode="r")
    a = g.attrs
    feats = g["features/timm-resnet18/features"] if "features/timm-resnet18" in g else None
    shape = "none" if feats is None else f"{feats.shape} {feats.dtype}"
    print(f"{store.name:28s} tiles {g['coords'].shape[0]:6d}  {a['tile_size']} px @ {a['effective_mpp']:.3f} um/px "
          f"from level {a['read_level']} (read {a['read_size']} px{', ' + a['resample'] if a['resize_factor'] != 1 else ''})  "
          f"complete={a['complete']}  features {shape}")
PY
echo
pdf=()
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null || [ -n "${PATHOPIPE_CHROMIUM:-}" ]; then
  pdf=(--pdf)
fi
echo "== pathopipe report $DEMO/run --slides-per-day 500 --costs configs/costs/example-cloud.yaml --costs configs/costs/example-hospital.yaml ${pdf[*]}"
echo "   (the decision summary: what 500 slides a day of this workflow need, and cost to buy, rent or own)"
pathopipe report "$DEMO/run" --slides-per-day 500 --costs configs/costs/example-cloud.yaml \
  --costs configs/costs/example-hospital.yaml "${pdf[@]}"
echo "open $DEMO/run/report/report.html in a browser: the summary first, every figure behind it, plots and QC pictures"
