"""Presets whose weights or architecture do not come as a timm-layout file on the hub, each
against its card's own code (as test_presets_match_cards.py; ViTs at depth 2 for the same
reasons): released checkpoints in DINOv2's layout that the card's code converts (kaiko ViT-L/14,
GPFM), a stem written in pathopipe reading a checkpoint in the original Swin layout (CTransPath),
weights in torch hub's checkpoint folder (kaiko), an architecture read from the model's cached
config.json (H0-mini), and a transformers model whose preprocessing is checked against its
card's image processor (Phikon-v2)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
import yaml
from PIL import Image
from safetensors.torch import save_file
from timm.layers import SwiGLUPacked
from timm.models import vision_transformer

from pathopipe.errors import ConfigError, WeightsError
from pathopipe.features import resolve_model
from pathopipe.features._layers import CTransPathStem

from _cards import IMAGENET, card_transform, extract, stored_features, with_live_layer_scales  # isort: skip  (tests/features/_cards.py)

DEPTH = 2
H_OPTIMUS = {"mean": [0.707223, 0.578729, 0.703617], "std": [0.211883, 0.230117, 0.177517]}


def _preset_at_depth(key: str, folder: Path) -> Path:
    spec = resolve_model(key).model_dump(mode="json")
    spec["timm_kwargs"] = {**spec["timm_kwargs"], "depth": DEPTH}
    path = folder / f"{key}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _seeded(seed: int, **kwargs: Any) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return with_live_layer_scales(timm.create_model(pretrained=False, **kwargs).eval())


def _dinov2_layout(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights as DINOv2's training code saves them (what timm's conversion undoes):
    a mask token; with registers, the class token's position embedding kept apart from it."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    width = state["cls_token"].shape[-1]
    state["mask_token"] = torch.zeros(1, width)
    if "reg_token" in state:
        first = torch.randn(1, 1, width, generator=torch.Generator().manual_seed(3)) * 0.02
        state["register_tokens"] = state.pop("reg_token")
        state["pos_embed"] = torch.cat([first, state["pos_embed"]], dim=1)
        state["cls_token"] = state["cls_token"] - first
    return state


def _relative_difference(features: np.ndarray, expected: np.ndarray) -> float:
    assert features.shape == expected.shape
    return float(np.abs(features - expected).max() / np.abs(expected).mean())


# kaiko's hubconf: vit_large_patch14_reg4_dinov2 (518 px position embeddings; dynamic size for
# 224 px input, as kaiko's eva passes), its release converted by timm's _convert_dinov2; GPFM (as
# TRIDENT's loader): vit_large_patch14_dinov2 at 224 px, GPFM.pth through timm's checkpoint filter
RELEASES = {
    "kaiko-vitl14": (dict(model_name="vit_large_patch14_reg4_dinov2", dynamic_img_size=True, depth=DEPTH),
                     vision_transformer._convert_dinov2),
    "gpfm": (dict(model_name="vit_large_patch14_dinov2", img_size=224, init_values=1e-5,
                  dynamic_img_size=True, depth=DEPTH), vision_transformer.checkpoint_filter_fn),
}  # fmt: skip


@pytest.mark.parametrize(("key", "size"), [("kaiko-vitl14", 224), ("kaiko-vitl14", 256), ("gpfm", 256)])
def test_a_released_dinov2_checkpoint_is_converted_as_the_card_converts_it(stores, tmp_path, key, size):
    kwargs, convert = RELEASES[key]
    release = tmp_path / f"{key}.pth"
    torch.save(_dinov2_layout(_seeded(7, **kwargs)), release)
    card = _seeded(99, **kwargs)  # other weights, replaced by the card's conversion of the release
    card.load_state_dict(convert(torch.load(release, weights_only=True), card), strict=True)
    ran = extract(stores[size], str(_preset_at_depth(key, tmp_path)), "--weights", str(release))
    assert ran.exit_code == 0, ran.output
    tiles, features, _ = stored_features(stores[size], key)
    with torch.inference_mode():
        expected = card(torch.stack([card_transform(key)(Image.fromarray(t)) for t in tiles])).numpy()
    assert _relative_difference(features, expected) < (1e-4 if size == 224 else 2e-2)


def test_released_weights_come_from_torch_hubs_checkpoints_and_are_never_downloaded(
    stores, tmp_path, monkeypatch
):
    """kaiko publishes its weights as GitHub release files that the card's ``torch.hub.load``
    keeps in torch hub's checkpoint folder: pretrained (the default) reads them there."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    preset = str(_preset_at_depth("kaiko-vits16", tmp_path))
    missing = extract(stores[224], preset)
    assert missing.exit_code != 0
    flat = " ".join(missing.output.split())
    for part in (
        "releases/download/0.0.1/vits16.pth",
        "curl -L",
        str(tmp_path / "torch"),
        "--weights random",
    ):
        assert part in flat, (part, flat)
    card = _seeded(5, model_name="vit_small_patch16_224", dynamic_img_size=True, num_classes=0, depth=DEPTH)
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(card.state_dict(), checkpoints / "vits16.pth")
    ran = extract(stores[224], preset)
    assert ran.exit_code == 0, ran.output
    tiles, features, attrs = stored_features(stores[224], "kaiko-vits16")
    assert attrs["weights"]["kind"] == "pretrained" and attrs["weights"]["path"].endswith("vits16.pth")
    with torch.inference_mode():
        expected = card(
            torch.stack([card_transform("kaiko-vits16")(Image.fromarray(t)) for t in tiles])
        ).numpy()
    assert _relative_difference(features, expected) < 1e-4


def _hub_snapshot(cache: Path, repo: str) -> Path:
    """A model's folder in a Hugging Face cache, as ``huggingface-cli download`` leaves it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))  # the workers the command starts
    return cache


def test_h0_mini_is_built_from_its_cached_config_with_the_cards_arguments(stores, hub_cache):
    """H0-mini's card: ``timm.create_model("hf-hub:bioptimus/H0-mini", pretrained=True,
    mlp_layer=SwiGLUPacked, act_layer=SiLU)``, timm's transform for its config, and CLS + mean of
    the patch tokens. The config.json here is written by the test (depth 2); the real one is
    read the same way."""
    from timm.data import create_transform, resolve_data_config

    with pytest.raises(WeightsError, match=r"config\.json .*huggingface-cli download bioptimus/H0-mini"):
        resolve_model("h0-mini")
    snapshot = _hub_snapshot(hub_cache, "bioptimus/H0-mini")
    model_args = {"img_size": 224, "init_values": 1e-5, "num_classes": 0, "global_pool": "", "depth": DEPTH}
    pretrained_cfg = {"input_size": [3, 224, 224], "interpolation": "bicubic", "crop_pct": 1.0, **H_OPTIMUS}
    config = {"architecture": "vit_base_patch14_reg4_dinov2", "num_classes": 0, "num_features": 768,
              "global_pool": "", "model_args": model_args, "pretrained_cfg": pretrained_cfg}  # fmt: skip
    (snapshot / "config.json").write_text(json.dumps(config))
    card = _seeded(13, model_name=config["architecture"], mlp_layer=SwiGLUPacked, act_layer=torch.nn.SiLU,
                   **model_args)  # fmt: skip
    save_file({k: v.contiguous() for k, v in card.state_dict().items()}, str(snapshot / "model.safetensors"))
    spec = resolve_model("h0-mini")
    assert spec.architecture == "vit_base_patch14_reg4_dinov2" and spec.timm_kwargs["depth"] == DEPTH
    assert spec.timm_kwargs["mlp_layer"] == "swiglu_packed" and spec.interpolation == "bicubic"
    ran = extract(stores[224], "h0-mini")  # pretrained: the default
    assert ran.exit_code == 0, ran.output
    tiles, features, attrs = stored_features(stores[224], "h0-mini")
    assert attrs["weights"]["kind"] == "pretrained"
    transform = create_transform(**resolve_data_config(pretrained_cfg))
    with torch.inference_mode():
        output = card(torch.stack([transform(Image.fromarray(t)) for t in tiles]))
        expected = torch.cat([output[:, 0], output[:, card.num_prefix_tokens :].mean(1)], dim=-1).numpy()
    assert features.shape[1] == 1536
    assert _relative_difference(features, expected) < 1e-4


def _phikon_v2_processor(**changes: Any) -> dict[str, Any]:
    """An image processor configuration with the preprocessing the preset states."""
    return {"image_processor_type": "BitImageProcessor", "do_resize": True, "size": {"shortest_edge": 224},
            "resample": 2, "do_center_crop": True, "crop_size": {"height": 224, "width": 224},
            "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "image_mean": list(IMAGENET["mean"]), "image_std": list(IMAGENET["std"]), "do_convert_rgb": True,
            **changes}  # fmt: skip


@pytest.mark.parametrize("size", [224, 256])
def test_phikon_v2_computes_what_its_card_computes(stores, hub_cache, size):
    """Phikon-v2's card: ``AutoImageProcessor.from_pretrained`` and ``AutoModel.from_pretrained``
    (a Dinov2Model), ``last_hidden_state[:, 0]``; here from a local snapshot at depth 2."""
    transformers = pytest.importorskip("transformers")
    snapshot = _hub_snapshot(hub_cache, "owkin/phikon-v2")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(17)
        model = transformers.Dinov2Model(transformers.Dinov2Config(
            hidden_size=1024, num_hidden_layers=DEPTH, num_attention_heads=16, patch_size=14, image_size=224
        ))  # fmt: skip
    with_live_layer_scales(model)
    model.save_pretrained(snapshot)
    (snapshot / "preprocessor_config.json").write_text(json.dumps(_phikon_v2_processor()))
    ran = extract(stores[size], "phikon-v2")
    assert ran.exit_code == 0, ran.output
    tiles, features, _ = stored_features(stores[size], "phikon-v2")
    processor = transformers.AutoImageProcessor.from_pretrained(snapshot)
    card = transformers.AutoModel.from_pretrained(snapshot).eval()
    with torch.inference_mode():
        inputs = processor(images=[Image.fromarray(t) for t in tiles], return_tensors="pt")
        expected = card(**inputs).last_hidden_state[:, 0].numpy()
    assert _relative_difference(features, expected) < (1e-4 if size == 224 else 2e-2)


def test_a_preset_unlike_its_cards_image_processor_is_refused(hub_cache):
    snapshot = _hub_snapshot(hub_cache, "owkin/phikon-v2")
    (snapshot / "preprocessor_config.json").write_text(json.dumps(_phikon_v2_processor()))
    assert resolve_model("phikon-v2").key == "phikon-v2"  # as stated: accepted
    (snapshot / "preprocessor_config.json").write_text(
        json.dumps(_phikon_v2_processor(resample=3, size={"shortest_edge": 256}, image_mean=[0.5, 0.5, 0.5]))
    )
    with pytest.raises(ConfigError) as refused:
        resolve_model("phikon-v2")
    for part in ("resizes to 256 px, the preset to 224 px", "resamples bicubic, the preset bilinear",
                 "image_mean is [0.5, 0.5, 0.5]", "fix the preset"):  # fmt: skip
        assert part in str(refused.value), part


def _original_swin_layout(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights as the original Swin code (and timm 0.5.4, which CTransPath's code uses) saves
    them: each stage's downsampling at its end rather than at the next stage's start, and the
    attention buffers (relative position indices, shifted windows' masks) stored."""

    def at_stage_end(key: str) -> str:
        return re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", key)

    state = {at_stage_end(k): v.clone() for k, v in model.state_dict().items()}
    for name, module in model.named_modules():
        for buffer in ("relative_position_index", "attn_mask"):
            if isinstance(getattr(module, buffer, None), torch.Tensor):
                state[f"{name}.{buffer}"] = getattr(module, buffer).clone()
    return state


@pytest.mark.parametrize("size", [224, 256])
def test_ctranspath_reads_the_published_swin_layout(stores, tmp_path, size):
    """CTransPath's convolutional stem is in neither timm nor transformers: pathopipe writes it
    and puts it in timm's Swin-T. Checked against the published checkpoint's layout (its stem's
    parameter names and shapes; the original Swin layout, whose shifted-window masks are exactly
    those TRIDENT's loader drops from CHIEF_CTransPath.pth), and end to end against the model
    given those weights, with CTransPath's transform."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(23)
        model = timm.create_model("swin_tiny_patch4_window7_224", embed_layer=CTransPathStem, num_classes=0)
        for module in model.modules():  # batch-norm statistics that matter
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    model.eval()
    release = _original_swin_layout(model)
    assert sorted(k for k in release if k.endswith("attn_mask")) == [
        "layers.0.blocks.1.attn_mask", "layers.1.blocks.1.attn_mask", "layers.2.blocks.1.attn_mask",
        "layers.2.blocks.3.attn_mask", "layers.2.blocks.5.attn_mask"]  # fmt: skip
    stem = {
        k: tuple(v.shape) for k, v in release.items() if k.startswith("patch_embed.") and "running" not in k
    }
    assert stem == {"patch_embed.proj.0.weight": (12, 3, 3, 3), "patch_embed.proj.1.weight": (12,),
                    "patch_embed.proj.1.bias": (12,), "patch_embed.proj.1.num_batches_tracked": (),
                    "patch_embed.proj.3.weight": (24, 12, 3, 3), "patch_embed.proj.4.weight": (24,),
                    "patch_embed.proj.4.bias": (24,), "patch_embed.proj.4.num_batches_tracked": (),
                    "patch_embed.proj.6.weight": (96, 24, 1, 1), "patch_embed.proj.6.bias": (96,),
                    "patch_embed.norm.weight": (96,), "patch_embed.norm.bias": (96,)}  # fmt: skip
    assert (
        "layers.0.downsample.reduction.weight" in release and "layers.3.downsample.norm.weight" not in release
    )
    checkpoint = tmp_path / "CHIEF_CTransPath.pth"
    torch.save({"model": release}, checkpoint)  # the published file keeps its weights under "model"
    ran = extract(stores[size], "ctranspath", "--weights", str(checkpoint))
    assert ran.exit_code == 0, ran.output
    tiles, features, _ = stored_features(stores[size], "ctranspath")
    with torch.inference_mode():
        expected = model(
            torch.stack([card_transform("ctranspath")(Image.fromarray(t)) for t in tiles])
        ).numpy()
    assert features.shape[1] == 768
    assert _relative_difference(features, expected) < (1e-4 if size == 224 else 2e-2)
