#!/usr/bin/env bash
# GPU check for a CUDA machine (about 8 minutes): set up, generate a slide, tile it, and measure
# extraction on the GPU (model alone vs pathopipe, resnet50 and ViT-L/16, random weights, bf16).
# Figures go to stdout and, as JSON, to $OUT (or the current folder).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python -c "import torch; assert torch.cuda.is_available(), 'CUDA is not available'; print(torch.cuda.get_device_name())"
python benchmarks/extraction.py --device cuda --precision bf16 --batch-size 256 --threads "$(nproc)" \
  --models timm/resnet50,timm/vit_large_patch16_224 --target-mpp 0.25 \
  --json "${OUT:-.}/gpu-extraction.json"
