"""Each preset's preprocessing is its model card's: the tiles pathopipe feeds a model equal what
the card's own torchvision transform makes of the same tiles as PIL images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pathopipe.cli.app import app
from pathopipe.errors import ConfigError
from pathopipe.features import ModelSpec, create_extractor, resolve_model

from _cards import IMAGENET, card_transform  # isort: skip  (tests/features/_cards.py)


def tiles(size: int, n: int = 4) -> np.ndarray:
    """Tissue-like tiles: smooth stain gradients with fine texture (what resizing filters act on)."""
    rng = np.random.default_rng(size)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([200 - 80 * xx, 120 + 60 * yy, 190 - 40 * xx * yy], axis=-1)
    out = base[None] + rng.normal(0, 12, (n, size, size, 3))
    return np.clip(out, 0, 255).astype(np.uint8)


def preprocessed(spec: ModelSpec, batch: np.ndarray) -> np.ndarray:
    """pathopipe's preprocessing of ``batch`` for ``spec`` (its model replaced by 'noop': the
    preprocessing is the preset's, the model is not needed to compare it)."""
    probe = spec.model_copy(
        update={
            "architecture": "noop",
            "library": "timm",
            "timm_kwargs": {},
            "output": "pooled",
            "embedding_dim": None,
        }
    )
    extractor = create_extractor(probe, weights="random", device="cpu")
    with torch.inference_mode():
        return extractor.preprocess(batch).contiguous().numpy()


# tolerance in normalised units (1 grey level ~ 0.017; measured: mean 0.0055, max 0.019 where tiles are
# resized, 0 where not): PIL's antialiased resampling and torch's
# differ by under a grey level on average; a missing crop, a wrong size or normalisation, or
# bilinear for bicubic exceed it many times over
CASES = [("uni", 224), ("uni", 256), ("virchow2", 224), ("virchow2", 256), ("h-optimus-0", 224),
         ("resnet50_trunc", 256), ("uni2-h", 256), ("virchow", 256), ("prov-gigapath", 224),
         ("prov-gigapath", 256), ("h-optimus-1", 224), ("kaiko-vits16", 224), ("kaiko-vitb8", 256),
         ("kaiko-vitl14", 256), ("gpfm", 256), ("phikon-v2", 224), ("phikon-v2", 256),
         ("ctranspath", 256)]  # fmt: skip


@pytest.mark.parametrize(("key", "size"), CASES)
def test_preprocessing_equals_the_model_cards_transform(key: str, size: int) -> None:
    spec = resolve_model(key)
    batch = tiles(size)
    ours = preprocessed(spec, batch)
    reference = torch.stack([card_transform(key)(Image.fromarray(t)) for t in batch]).numpy()
    assert ours.shape == reference.shape == (len(batch), 3, spec.input_size, spec.input_size)
    difference = np.abs(ours - reference)
    assert difference.mean() < 0.01 and difference.max() < 0.05, (difference.mean(), difference.max())


def test_a_wrong_interpolation_would_be_caught() -> None:
    """The tolerance above tells bicubic from bilinear (so the test can fail)."""
    spec = resolve_model("virchow2")
    batch = tiles(256)
    bilinear = preprocessed(spec.model_copy(update={"interpolation": "bilinear"}), batch)
    reference = torch.stack([card_transform("virchow2")(Image.fromarray(t)) for t in batch]).numpy()
    difference = np.abs(bilinear - reference)
    assert difference.mean() >= 0.01 or difference.max() >= 0.05


def test_details_print_every_field_of_a_preset() -> None:
    shown = CliRunner().invoke(app, ["models", "--details", "virchow2"])
    assert shown.exit_code == 0, shown.output
    for field in ("interpolation", "bicubic", "center_crop", "embedding_dim", "2560", "precision", "fp16",
                  "https://huggingface.co/paige-ai/Virchow2", "reg_tokens"):  # fmt: skip
        assert field in shown.output, field
    unknown = CliRunner().invoke(app, ["models", "--details", "virchow3"])
    assert unknown.exit_code == 2 and "virchow2" in unknown.output  # did you mean


def test_tiles_unlike_the_cards_recommendation_are_warned_about() -> None:
    spec = resolve_model("h-optimus-0")
    assert spec.card_mismatches(224, 0.5) == []
    assert spec.card_mismatches(224, 0.52) == []  # within 10 %
    warned = spec.card_mismatches(256, 1.0)
    assert warned == ["h-optimus-0: tiles of 256 px; its model card recommends 224 px",
                      "h-optimus-0: tiles at 1 µm/px; its model card recommends 0.5 µm/px"]  # fmt: skip


def test_a_preset_whose_output_dimension_is_not_the_models_is_refused() -> None:
    wrong = ModelSpec(key="r18", architecture="resnet18", mean=IMAGENET["mean"], std=IMAGENET["std"],
                      embedding_dim=1000)  # fmt: skip
    with pytest.raises(ConfigError, match="says 1000-d features, but the model built from it gives 512-d"):
        create_extractor(wrong, weights="random", device="cpu")
