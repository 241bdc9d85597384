"""The preprocessing each model card's example code applies to a PIL tile: one table for the
preprocessing checks (test_presets.py) and the end-to-end checks (test_presets_match_cards.py,
test_presets_released_weights.py); the random weights those checks give both sides, and the
``pathopipe extract`` they run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from torchvision import transforms
from torchvision.transforms import v2
from typer.testing import CliRunner

from pathopipe.cli.app import app

__all__ = ["BICUBIC", "IMAGENET", "card_transform", "extract", "stored_features", "with_live_layer_scales"]

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
BICUBIC = transforms.InterpolationMode.BICUBIC


def card_transform(key: str) -> transforms.Compose:
    """The preprocessing each model card's example code applies to a PIL tile."""
    cards = {
        # MahmoodLab/UNI: Resize(224), ToTensor, Normalize(ImageNet)
        "uni": [transforms.Resize(224), transforms.ToTensor(), transforms.Normalize(**IMAGENET)],
        # paige-ai/Virchow2: timm's create_transform(resolve_data_config(...)) for its config
        "virchow2": [
            transforms.Resize(224, interpolation=BICUBIC),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(**IMAGENET),
        ],
        # bioptimus/H-optimus-0: 224 px tiles at 0.5 µm/px, ToTensor + its own normalisation
        "h-optimus-0": [
            transforms.ToTensor(),
            transforms.Normalize(mean=(0.707223, 0.578729, 0.703617), std=(0.211883, 0.230117, 0.177517)),
        ],
        # MahmoodLab/UNI2-h: Resize(224), ToTensor, Normalize(ImageNet)
        "uni2-h": [transforms.Resize(224), transforms.ToTensor(), transforms.Normalize(**IMAGENET)],
        # paige-ai/Virchow: as Virchow2
        "virchow": [
            transforms.Resize(224, interpolation=BICUBIC),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(**IMAGENET),
        ],
        # prov-gigapath: Resize(256, bicubic), CenterCrop(224), ToTensor, Normalize(ImageNet)
        "prov-gigapath": [
            transforms.Resize(256, interpolation=BICUBIC),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(**IMAGENET),
        ],
        "h-optimus-1": [
            transforms.ToTensor(),
            transforms.Normalize(mean=(0.707223, 0.578729, 0.703617), std=(0.211883, 0.230117, 0.177517)),
        ],
        # CLAM: 256 px patches resized to 224, ImageNet normalisation
        "resnet50_trunc": [transforms.Resize(224), transforms.ToTensor(), transforms.Normalize(**IMAGENET)],
        # github.com/kaiko-ai/towards_large_pathology_fms (README): torchvision v2 on the image
        "kaiko": [
            v2.ToImage(),
            v2.Resize(size=224),
            v2.CenterCrop(size=224),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        ],
        # majiabo/GPFM, as TRIDENT's loader: Resize(224, bicubic), ToTensor, Normalize(ImageNet)
        "gpfm": [
            transforms.Resize(224, interpolation=BICUBIC),
            transforms.ToTensor(),
            transforms.Normalize(**IMAGENET),
        ],
        # github.com/Xiyue-Wang/TransPath (get_features_CTransPath.py): Resize(224), Normalize(ImageNet)
        "ctranspath": [transforms.Resize(224), transforms.ToTensor(), transforms.Normalize(**IMAGENET)],
        # owkin/phikon-v2, as TRIDENT's loader: Resize(224), CenterCrop(224), Normalize(ImageNet)
        "phikon-v2": [
            transforms.Resize(224),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(**IMAGENET),
        ],
    }
    if key.startswith("kaiko-"):  # one transform for every kaiko.ai ViT
        key = "kaiko"
    return transforms.Compose(cards[key])


def with_live_layer_scales(model: torch.nn.Module) -> torch.nn.Module:
    """The model with its LayerScale factors drawn around 1 instead of their initial 1e-5: a
    ViT initialised for training scales every block's contribution by 1e-5, so its random-weight
    features hardly depend on the blocks or the image, and a check against them could not fail."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("gamma", "lambda1")):  # timm's LayerScale, transformers' Dinov2LayerScale
                parameter.copy_(0.5 + torch.rand(parameter.shape, generator=generator))
    return model


def extract(out: Path, model: str, *extra: str) -> Any:
    """``pathopipe extract OUT --model MODEL`` on the CPU in fp32, one worker, features computed
    afresh (``--force``); ``extra``: more arguments (e.g. ``--weights FILE``)."""
    args = ["extract", str(out), "--model", model, "--device", "cpu", "--dtype", "float32", "--workers", "1",
            "--no-progress", "--force", *extra]  # fmt: skip
    return CliRunner().invoke(app, args)


def stored_features(out: Path, key: str, slide: str = "s") -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A slide's stored tiles, its ``features/<key>`` and their attributes."""
    group = zarr.open_group(out / "slides" / f"{slide}.zarr", mode="r")
    node = group[f"features/{key}"]
    return np.asarray(group["tiles"][:]), np.asarray(node["features"][:]), dict(node.attrs)
