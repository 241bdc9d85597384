"""Each preset, end to end, against its model card's own code.

For every preset the reference is built the way the card's example does it (timm with the
card's keyword arguments, the card's torchvision transform on PIL images, the card's pooling),
given seeded random weights that are saved to a file; ``pathopipe extract --model PRESET
--weights FILE`` must then give the reference's features for every stored tile.

The ViTs are built with 2 blocks instead of their 24-40 (``depth=2`` for both sides): what the
preset decides (architecture, keyword arguments, register tokens, pooling, preprocessing, weight
loading) does not change with depth, and full-depth ViT-L/H/g models take minutes and gigabytes
on this CPU. ResNet-50 (CLAM) runs whole.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml
import zarr
from PIL import Image
from safetensors.torch import save_file
from timm.layers import SwiGLUPacked
from typer.testing import CliRunner

from pathopipe.cli.app import app
from pathopipe.features import resolve_model

from _cards import IMAGENET, card_transform, extract, stored_features, with_live_layer_scales  # isort: skip  (tests/features/_cards.py)

DEPTH = 2  # transformer blocks on both sides (see the module's docstring)


def _vit_cls(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)  # num_classes=0: timm's pooled output, the CLS token


def _virchow2(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    output = model(x)  # global_pool "": all tokens; 0 CLS, 1-4 registers, 5- patches
    return torch.cat([output[:, 0], output[:, 5:].mean(1)], dim=-1)


def _virchow(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    output = model(x)  # no registers: 0 CLS, 1- patches
    return torch.cat([output[:, 0], output[:, 1:].mean(1)], dim=-1)


def _clam(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    m: torch.nn.Module = model
    x = m.maxpool(m.act1(m.bn1(m.conv1(x))))  # type: ignore[operator]
    x = m.layer3(m.layer2(m.layer1(x)))  # type: ignore[operator]
    return torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)


# what each card's code does: timm.create_model(...) arguments and pooling (its transform: _cards.py)
CARDS = {
    "uni": (  # huggingface.co/MahmoodLab/UNI
        dict(model_name="vit_large_patch16_224", img_size=224, patch_size=16, init_values=1e-5,
             num_classes=0, dynamic_img_size=True, depth=DEPTH),
        _vit_cls,
    ),
    "virchow2": (  # huggingface.co/paige-ai/Virchow2 (its config.json: the model arguments)
        dict(model_name="vit_huge_patch14_224", img_size=224, init_values=1e-5, num_classes=0,
             reg_tokens=4, mlp_ratio=5.3375, global_pool="", dynamic_img_size=True,
             mlp_layer=SwiGLUPacked, act_layer=torch.nn.SiLU, depth=DEPTH),
        _virchow2,
    ),
    "h-optimus-0": (  # huggingface.co/bioptimus/H-optimus-0
        dict(model_name="vit_giant_patch14_reg4_dinov2", img_size=224, init_values=1e-5,
             num_classes=0, dynamic_img_size=False, depth=DEPTH),
        _vit_cls,
    ),
    "uni2-h": (  # huggingface.co/MahmoodLab/UNI2-h
        dict(model_name="vit_giant_patch14_224", img_size=224, patch_size=14, depth=DEPTH, num_heads=24,
             init_values=1e-5, embed_dim=1536, mlp_ratio=2.66667 * 2, num_classes=0, no_embed_class=True,
             mlp_layer=SwiGLUPacked, act_layer=torch.nn.SiLU, reg_tokens=8, dynamic_img_size=True),
        _vit_cls,
    ),
    "prov-gigapath": (  # huggingface.co/prov-gigapath/prov-gigapath (its config.json)
        dict(model_name="vit_giant_patch14_dinov2", img_size=224, in_chans=3, patch_size=16, embed_dim=1536,
             depth=DEPTH, num_heads=24, init_values=1e-5, mlp_ratio=5.33334, num_classes=0),
        _vit_cls,
    ),
    "virchow": (  # huggingface.co/paige-ai/Virchow
        dict(model_name="vit_huge_patch14_224", img_size=224, init_values=1e-5, num_classes=0,
             mlp_ratio=5.3375, global_pool="", dynamic_img_size=True, mlp_layer=SwiGLUPacked,
             act_layer=torch.nn.SiLU, depth=DEPTH),
        _virchow,
    ),
    "h-optimus-1": (  # huggingface.co/bioptimus/H-optimus-1: as H-optimus-0
        dict(model_name="vit_giant_patch14_reg4_dinov2", img_size=224, init_values=1e-5,
             num_classes=0, dynamic_img_size=False, depth=DEPTH),
        _vit_cls,
    ),
    "kaiko-vitb8": (  # github.com/kaiko-ai/towards_large_pathology_fms (hubconf.py)
        dict(model_name="vit_base_patch8_224", dynamic_img_size=True, num_classes=0, depth=DEPTH),
        _vit_cls,
    ),
    "resnet50_trunc": (  # github.com/mahmoodlab/CLAM: ResNet-50 to layer3, average pool
        dict(model_name="resnet50", num_classes=0),
        _clam,
    ),
}  # fmt: skip


def _reference(key: str, weights: Path, tiles: np.ndarray) -> np.ndarray:
    kwargs, pool = CARDS[key]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        model = with_live_layer_scales(timm.create_model(pretrained=False, **kwargs).eval())
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    transform = card_transform(key)
    with torch.inference_mode():
        batch = torch.stack([transform(Image.fromarray(tile)) for tile in tiles])
        return pool(model, batch).numpy()


def _preset_file(key: str, folder: Path) -> Path:
    """The shipped preset, with the reference's depth for the ViTs."""
    spec = resolve_model(key).model_dump(mode="json")
    if key != "resnet50_trunc":  # every ViT preset
        spec["timm_kwargs"] = {**spec["timm_kwargs"], "depth": DEPTH}
    path = folder / f"{key}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


# tolerance: max |difference| relative to the features' mean |value|, fp32. Where tiles are not
# resized only the order of float operations differs (measured: at most 1.2e-6 of the mean);
# where they are (256 px tiles), PIL's and torch's antialiased resampling differ by under a grey
# level, which the network carries on (measured: at most 6.6e-3, CLAM's ResNet)
@pytest.mark.parametrize(
    ("key", "size", "rtol"),
    [("uni", 224, 1e-4), ("virchow2", 224, 1e-4), ("h-optimus-0", 224, 1e-4), ("resnet50_trunc", 224, 1e-4),
     ("uni2-h", 224, 1e-4), ("virchow", 224, 1e-4), ("h-optimus-1", 224, 1e-4), ("prov-gigapath", 224, 2e-2),
     ("uni", 256, 2e-2), ("virchow2", 256, 2e-2), ("resnet50_trunc", 256, 2e-2),
     ("prov-gigapath", 256, 2e-2), ("kaiko-vitb8", 224, 1e-4), ("kaiko-vitb8", 256, 2e-2)],
)  # fmt: skip
def test_a_preset_computes_what_its_model_card_computes(stores, tmp_path, key, size, rtol):
    out = stores[size]
    store = zarr.open_group(out / "slides" / "s.zarr", mode="r")
    tiles = np.asarray(store["tiles"][:])
    weights = tmp_path / f"{key}.safetensors"
    expected = _reference(key, weights, tiles)
    ran = extract(out, str(_preset_file(key, tmp_path)), "--weights", str(weights))
    assert ran.exit_code == 0, ran.output
    group = zarr.open_group(out / "slides" / "s.zarr", mode="r")
    features = np.asarray(group[f"features/{key}/features"][:])
    assert features.shape == expected.shape == (len(tiles), resolve_model(key).embedding_dim)
    difference = np.abs(features - expected)
    scale = float(np.abs(expected).mean())  # features of random weights are small for some models
    assert difference.max() < rtol * scale, (key, size, float(difference.max()), scale)


def test_an_hf_hub_timm_model_runs_from_its_cached_config(stores, tmp_path, monkeypatch):
    """``--model hf-hub:ORG/NAME``: architecture, arguments and preprocessing from the cached
    config.json, weights (the default, pretrained) from the same cache; equal to timm's own
    model and evaluation transform for that config."""
    from huggingface_hub import constants
    from timm.data import create_transform, resolve_data_config

    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = cache / "models--acme--tiny-vit" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (cache / "models--acme--tiny-vit" / "refs").mkdir()
    (cache / "models--acme--tiny-vit" / "refs" / "main").write_text(commit)
    pretrained_cfg = {"input_size": [3, 224, 224], "interpolation": "bicubic", "crop_pct": 0.875,
                      "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}  # fmt: skip
    config = {"architecture": "vit_tiny_patch16_224", "num_classes": 0, "num_features": 192,
              "model_args": {"depth": DEPTH}, "pretrained_cfg": pretrained_cfg}  # fmt: skip
    (snapshot / "config.json").write_text(__import__("json").dumps(config))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=DEPTH).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(snapshot / "model.safetensors"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))  # the workers the command starts
    spec = resolve_model("hf-hub:acme/tiny-vit")
    assert (spec.key, spec.resize, spec.center_crop, spec.interpolation) == (
        "hf-acme-tiny-vit",
        256,
        True,
        "bicubic",
    )
    out = stores[224]
    ran = extract(out, "hf-hub:acme/tiny-vit")
    assert ran.exit_code == 0, ran.output
    group = zarr.open_group(out / "slides" / "s.zarr", mode="r")
    features = np.asarray(group["features/hf-acme-tiny-vit/features"][:])
    assert group["features/hf-acme-tiny-vit"].attrs["weights"]["kind"] == "pretrained"
    transform = create_transform(**resolve_data_config(pretrained_cfg))  # timm's evaluation transform
    tiles = np.asarray(group["tiles"][:])
    with torch.inference_mode():
        expected = model(torch.stack([transform(Image.fromarray(t)) for t in tiles])).numpy()
    assert np.abs(features - expected).max() < 2e-2 * np.abs(expected).mean()


@pytest.mark.parametrize("size", [224, 256])
def test_phikon_through_transformers_computes_what_its_card_computes(stores, tmp_path, size):
    """A Hugging Face transformers model (the [transformers] extra): owkin/phikon's card builds
    ``ViTModel(add_pooling_layer=False)``, preprocesses with its ``ViTImageProcessor`` and takes
    ``last_hidden_state[:, 0]``. Full model (ViT-B), seeded random weights saved to a file."""
    transformers = pytest.importorskip("transformers")
    spec = resolve_model("phikon")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        model = transformers.ViTModel(
            transformers.ViTConfig(**spec.transformers_config), add_pooling_layer=False
        )
    model.eval()
    model.save_pretrained(tmp_path / "phikon")  # the layout the hub publishes (transformers converts it)
    weights = tmp_path / "phikon" / "model.safetensors"
    mean, std = list(IMAGENET["mean"]), list(IMAGENET["std"])
    processor = transformers.ViTImageProcessor(
        size={"height": 224, "width": 224}, image_mean=mean, image_std=std
    )
    out = stores[size]
    ran = extract(out, "phikon", "--weights", str(weights))
    assert ran.exit_code == 0, ran.output
    tiles, features, attrs = stored_features(out, "phikon")
    with torch.inference_mode():
        inputs = processor(images=[Image.fromarray(t) for t in tiles], return_tensors="pt")
        expected = model(**inputs).last_hidden_state[:, 0].numpy()
    assert features.shape == expected.shape == (len(tiles), 768)
    assert attrs["versions"]["transformers"] == transformers.__version__
    rtol = 1e-4 if size == 224 else 2e-2  # resized: PIL's resampling against torch's
    difference = np.abs(features - expected).max() / np.abs(expected).mean()
    assert difference < rtol


@pytest.mark.slow
def test_a_vit_g_preset_at_full_depth_computes_what_its_card_computes(tmp_path):
    """H-optimus-0 whole (ViT-g/14 with registers, 40 blocks, 1.1 B parameters) on two tiles:
    the depth-2 checks above stand for the full models only if depth changes nothing the preset
    decides; this runs one ViT-g preset once as shipped."""
    from pathopipe.testing import write_synthetic_slide

    slide = write_synthetic_slide(tmp_path / "g.svs", width=1000, height=560, seed=5, workers=1).path
    out = tmp_path / "out"
    tiled = CliRunner().invoke(app, ["tile", str(slide), "--out", str(out), "--workers", "1", "--no-progress",
                                     "--set", "tiling.target_mpp=0.5",
                                     "--set", "tiling.min_tissue_fraction=0"])  # fmt: skip
    assert tiled.exit_code == 0, tiled.output
    kwargs, pool = CARDS["h-optimus-0"]
    kwargs = {k: v for k, v in kwargs.items() if k != "depth"}  # the card's model, whole
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        model = with_live_layer_scales(timm.create_model(pretrained=False, **kwargs).eval())
    assert len(model.blocks) == 40
    weights = tmp_path / "h-optimus-0.safetensors"
    save_file(model.state_dict(), str(weights))
    ran = extract(out, "h-optimus-0", "--weights", str(weights))
    assert ran.exit_code == 0, ran.output
    tiles, features, _ = stored_features(out, "h-optimus-0", slide="g")
    with torch.inference_mode():
        expected = pool(
            model, torch.stack([card_transform("h-optimus-0")(Image.fromarray(t)) for t in tiles])
        ).numpy()
    assert len(tiles) >= 2 and features.shape == expected.shape == (len(tiles), 1536)
    assert np.abs(features - expected).max() < 1e-4 * np.abs(expected).mean()
