#!/usr/bin/env bash
# GPU check for a CUDA machine (about 8 minutes):
#  1. the extraction benchmark on the GPU: model alone vs pathopipe, resnet50 and the UNI-size
#     (ViT-L/16, preset uni) and ViT-g-size (ViT-g/14 with registers, preset h-optimus-0) presets,
#     random weights, bf16, batch 256, 3,878 tiles at 0.25 µm/px;
#  2. `pathopipe run workflows/multi-model.yaml` on 4 generated slides with a scheduler, one
#     GPU worker (--resources GPU=1) and CPU workers (--resources CPU=1) for the tiling, through
#     the `address` profile: extraction must land on the GPU worker, tiling on the CPU ones;
#  3. `pathopipe extract --device cuda` on the same stores: a local dask-cuda cluster
#     (LocalCUDACluster, the `[gpu]` extra; carried as a wheel) that pathopipe starts itself.
# Figures go to stdout and, as JSON, to $OUT (or the current folder).
#
# Where the machine has no network (the lent H200), run scripts/gpu_wheels.sh here first and
# carry .whl: they are installed into /tmp/site and the repo is used in place.
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS="${OUT:-.}"
if [ -d .whl ] && ! [ -x .venv/bin/python ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD" PATH="/tmp/site/bin:$PATH"
  PY=python3
else
  source scripts/_setup.sh
  PY=python
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
$PY -c "import torch; assert torch.cuda.is_available(), 'CUDA is not available'; print(torch.__version__, torch.cuda.get_device_name())"
echo "== 1. extraction benchmark on the GPU"
$PY benchmarks/extraction.py --device cuda --precision bf16 --batch-size 256 --threads "$(nproc)" \
  --models timm/resnet50,uni,h-optimus-0 --target-mpp 0.25 \
  --json "$RESULTS/gpu-extraction.json"
echo "== 2. pathopipe run with a GPU worker and CPU workers (address profile)"
work="$(mktemp -d)"
for i in 0 1 2 3; do
  $PY scripts/make_synthetic_slide.py "$work/slides/s$i.svs" --width 20000 --height 15000 --seed "$i" >/dev/null
done
$PY -m distributed.cli.dask_scheduler --host 127.0.0.1 --port 8786 --no-dashboard >"$work/scheduler.log" 2>&1 &
sleep 3
$PY -m distributed.cli.dask_worker tcp://127.0.0.1:8786 --nthreads 1 --resources GPU=1 --name gpu0 \
  --no-dashboard >"$work/gpu-worker.log" 2>&1 &
$PY -m distributed.cli.dask_worker tcp://127.0.0.1:8786 --nworkers 8 --nthreads 1 --resources CPU=1 \
  --no-dashboard >"$work/cpu-workers.log" 2>&1 &
rc=0
$PY -m pathopipe run workflows/multi-model.yaml --slides "$work/slides" --out "$work/out" \
  --cluster address --set cluster.address=tcp://127.0.0.1:8786 --no-progress || rc=$?
$PY -m pathopipe status "$work/out" --json > "$RESULTS/gpu-run-status.json" || true
cp "$work/out/manifest.csv" "$RESULTS/gpu-run-manifest.csv" 2>/dev/null || true
$PY - "$work/out" <<'PY'
import json, sys, zarr
from pathlib import Path
for store in sorted(Path(sys.argv[1], "slides").glob("*.zarr")):
    for key in ("resnet50_trunc", "timm-vit_small_patch16_224"):
        g = zarr.open_group(store / "features" / key, mode="r")
        print(store.name, key, g["features"].shape, "pids", g.attrs["worker_pids"],
              "s_models", round(g.attrs["seconds_models"], 2), "s_wait_tiles", round(g.attrs["seconds_wait_tiles"], 2))
import pandas as pd
metrics = pd.read_parquet(Path(sys.argv[1], "metrics.parquet"))
work = metrics[metrics["role"] == "work"]
print("work tasks per stage, device and worker pid (features on the GPU worker only, tiles on the others):")
print(work.groupby(["stage", "device", "pid"]).size().to_string())
PY
kill %1 %2 %3 2>/dev/null || true
echo "== 3. pathopipe extract --device cuda on a local dask-cuda cluster"
$PY -m pathopipe extract "$work/out" --model timm/resnet50 --weights random --device cuda --precision bf16 --batch-size 256 \
  --no-progress || rc=$?
cp "$work/out/features-timm-resnet50.csv" "$RESULTS/gpu-extract-local-cuda.csv" 2>/dev/null || true
exit $rc
