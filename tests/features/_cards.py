"""The preprocessing each model card's example code applies to a PIL tile: one table for the
preprocessing checks (test_presets.py) and the end-to-end checks (test_presets_match_cards.py)."""

from __future__ import annotations

from torchvision import transforms

__all__ = ["BICUBIC", "IMAGENET", "card_transform"]

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
    }
    return transforms.Compose(cards[key])
