#!/usr/bin/env python
"""The hand-written baseline of benchmarks/fixed_costs.py: what a researcher writes in an
afternoon, as one process. OpenSlide reads the given tile coordinates (level 0, resized to the
tile size), a torch DataLoader batches them (ImageNet normalisation), timm's resnet18 (random
weights, as pathopipe's run) computes the pooled features, and they are saved as one .npy.

It does less than pathopipe: no tissue detection (it is given pathopipe's kept coordinates),
no stored tiles, no resume, no metrics. Its whole process is timed from outside.

    python benchmarks/_handwritten.py SLIDE COORDS.npy READ_SIZE TILE_SIZE OUT.npy
"""

from __future__ import annotations

import sys

import numpy as np
import openslide
import timm
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


class SlideTiles(Dataset):
    def __init__(self, path: str, coords: np.ndarray, read_size: int, tile_size: int) -> None:
        self.path, self.coords, self.read_size, self.tile_size = path, coords, read_size, tile_size
        self.slide: openslide.OpenSlide | None = None

    def __len__(self) -> int:
        return len(self.coords)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.slide is None:
            self.slide = openslide.OpenSlide(self.path)
        x, y = (int(v) for v in self.coords[i])
        region = self.slide.read_region((x, y), 0, (self.read_size, self.read_size)).convert("RGB")
        if self.read_size != self.tile_size:
            region = region.resize((self.tile_size, self.tile_size), Image.BILINEAR)
        tile = torch.from_numpy(np.asarray(region)).permute(2, 0, 1).float() / 255
        return (tile - MEAN) / STD


def main() -> None:
    path, coords_file, read_size, tile_size, out = sys.argv[1:6]
    coords = np.load(coords_file)
    model = timm.create_model("resnet18", pretrained=False, num_classes=0).eval()
    loader = DataLoader(SlideTiles(path, coords, int(read_size), int(tile_size)), batch_size=32)
    with torch.inference_mode():
        features = [model(batch) for batch in loader]
    np.save(out, torch.cat(features).numpy().astype(np.float16))


if __name__ == "__main__":
    main()
