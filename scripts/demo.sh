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
echo "== pathopipe report $DEMO/run --slides-per-day 500 --costs configs/costs/example-cloud.yaml"
pathopipe report "$DEMO/run" --slides-per-day 500 --costs configs/costs/example-cloud.yaml
python - "$DEMO/run/report/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
for name, st in s["stages"].items():
    print(f"  {name:9s} {st['tiles']:6d} tiles  {st['tiles_per_busy_second']:8.1f} tiles per busy second  "
          f"{st['core_seconds_per_slide'] or 0:7.2f} core-s per slide")
c = s.get("capacity", {})
print(f"  bottleneck: {s['bottleneck_stage']}; for 500 slides/day: {c.get('cpu_cores')} cores, {c.get('gpus')} GPUs")
k = s.get("costs", {})
print(f"  EXAMPLE prices: rent {k.get('rent_per_slide', 0):.3f} vs own {k.get('own_per_slide', 0):.3f} "
      f"{k.get('currency')} per slide; break-even at {k.get('break_even_slides_per_day')} slides/day")
PY
echo
echo "== outputs"
echo "manifest: $DEMO/run/manifest.csv   run info: $DEMO/run/run.json   metrics: $DEMO/run/metrics.parquet"
echo "report:   $DEMO/run/report/report.html (open in a browser; links the QC pictures in $DEMO/run/report/qc/)"
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
