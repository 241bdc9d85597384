#!/usr/bin/env python
"""Count forward FLOPs of one 224 px image for the architectures in the report's what-if table
(torch.utils.flop_counter on the meta device: no weights, no memory)."""

from __future__ import annotations

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

ARCHITECTURES = {
    "ResNet-18": "resnet18",
    "ResNet-50": "resnet50",
    "ViT-S/16": "vit_small_patch16_224",
    "ViT-B/16": "vit_base_patch16_224",
    "ViT-L/16": "vit_large_patch16_224",
    "ViT-H/14": "vit_huge_patch14_224",
    "ViT-g/14": "vit_giant_patch14_224",
}

if __name__ == "__main__":
    for label, name in ARCHITECTURES.items():
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False, num_classes=0).eval()
            image = torch.empty(1, 3, 224, 224)
        with FlopCounterMode(display=False) as counter:
            model(image)
        print(f"{label:10s} {name:28s} {counter.get_total_flops() / 1e9:8.2f} GFLOPs")
