"""A timm model turned into a tile feature extractor (uint8 tiles in, float features out).

Imported only when an extractor is created (it imports torch).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from pathopipe.errors import ConfigError
from pathopipe.features._spec import ModelSpec
from pathopipe.features._weights import (
    WeightsSource,
    load_strict,
    read_state_dict,
    weights_sha256,
)

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "fp16"]
# layer classes a preset names in its timm_kwargs (mlp_layer, embed_layer), by name
_LAYER_NAMES = {
    "swiglu_packed": ("timm.layers", "SwiGLUPacked"),
    "ctranspath_stem": ("pathopipe.features._layers", "CTransPathStem"),
}


def timm_kwargs(spec: ModelSpec) -> dict[str, Any]:
    """The preset's timm arguments, layer names replaced by their classes."""
    import importlib

    kwargs = dict(spec.timm_kwargs)
    for argument in ("mlp_layer", "embed_layer"):
        if isinstance(kwargs.get(argument), str):
            if kwargs[argument] not in _LAYER_NAMES:
                raise ConfigError(f"model preset {spec.key!r}: {argument} {kwargs[argument]!r} is not one of "
                                  f"{', '.join(sorted(_LAYER_NAMES))}")  # fmt: skip
            module, name = _LAYER_NAMES[kwargs[argument]]
            kwargs[argument] = getattr(importlib.import_module(module), name)
    kwargs.setdefault("num_classes", 0)
    return kwargs


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} requested but CUDA is not available here; use --device cpu or auto"
        )
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda[:N], not {device!r}")
    return device


NOOP = "noop"


class CentrePixel(torch.nn.Module):
    """The 'noop' model: each tile's normalised centre pixel (3-d), so that data-path
    benchmarks measure no model (yet the output still tells tiles apart)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, x.shape[2] // 2, x.shape[3] // 2]


def build_model(spec: ModelSpec) -> torch.nn.Module:
    """The preset's network with freshly initialised weights (from torch's current random
    state): timm's, a transformers class from its config, or the 'noop' model."""
    if spec.architecture == NOOP:
        return CentrePixel()
    if spec.library == "timm":
        import timm

        return timm.create_model(spec.architecture, pretrained=False, **timm_kwargs(spec))
    from pathopipe.features import _transformers

    return _transformers.build(spec)


def load_model(spec: ModelSpec, path: str | Path) -> torch.nn.Module:
    """The preset's network with the weights file at ``path``, loaded as the card's code loads
    it: strictly into timm's model (converted first where the card converts), or by
    transformers' ``from_pretrained``."""
    if spec.library == "transformers":
        from pathopipe.features import _transformers

        return _transformers.load(spec, path)
    with torch.random.fork_rng(devices=[]):  # initial weights, replaced: the process's random state is kept
        model = build_model(spec)
    classifier = ("fc", "head", "classifier", "head.fc", "pooler")  # heads the extractor does not use
    load_strict(model, card_state_dict(spec, model, path), source=str(path), classifier=classifier)
    return model


def card_state_dict(spec: ModelSpec, model: torch.nn.Module, path: str | Path) -> dict[str, Any]:
    """The weights file's tensors in the model's layout: as read, or converted as the card's
    code converts them (``convert_weights``: timm's DINOv2 conversion, its ViT or Swin
    checkpoint filter)."""
    from timm.models import swin_transformer, vision_transformer

    state = read_state_dict(path)
    if spec.convert_weights == "timm-swin":
        return swin_transformer.checkpoint_filter_fn(state, model)
    if spec.convert_weights == "dinov2":
        return vision_transformer._convert_dinov2(state, model)  # type: ignore[arg-type]
    if spec.convert_weights == "timm-vit":
        return vision_transformer.checkpoint_filter_fn(state, model)  # type: ignore[arg-type]
    return state


class FeatureHead(torch.nn.Module):
    """A model and the preset's output handling: what ``torch.compile`` compiles."""

    def __init__(self, model: torch.nn.Module, output: str, library: str = "timm") -> None:
        super().__init__()
        self.model = model
        self.output = output
        self.library = library

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        model: Any = self.model  # a timm model: its layers are attributes
        mode = self.output
        if self.library == "transformers":  # tokens: CLS, registers, patches
            tokens = model(pixel_values=x).last_hidden_state
            if mode in ("cls", "pooled"):
                return tokens[:, 0]
            prefix = 1 + int(getattr(model.config, "num_register_tokens", 0) or 0)
            return torch.cat([tokens[:, 0], tokens[:, prefix:].mean(dim=1)], dim=1)
        if mode == "pooled":
            return model(x)
        if mode == "resnet-layer3-pool":  # CLAM's truncated ResNet-50
            x = model.maxpool(model.act1(model.bn1(model.conv1(x))))
            return model.layer3(model.layer2(model.layer1(x))).mean(dim=(2, 3))
        tokens = model.forward_features(x)
        if mode == "cls":
            return tokens[:, 0]
        prefix = getattr(model, "num_prefix_tokens", 1)  # CLS + registers
        return torch.cat([tokens[:, 0], tokens[:, prefix:].mean(dim=1)], dim=1)


class FeatureExtractor:
    """Runs one model on batches of uint8 RGB tiles (N, H, W, 3) and returns (N, D) float32."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        weights: str = "random",
        seed: int = 0,
        device: str = "cpu",
        precision: Precision = "fp32",
        compile: bool = False,
    ) -> None:
        import torch

        self.spec = spec
        self.device = torch.device(resolve_device(device))
        self.precision = precision
        # random weights are a function of the seed, drawn from a forked generator: the process's
        # own random state is left as it was
        if weights == "random" or spec.architecture == NOOP:  # noop has no parameters to load
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = build_model(spec)
            self.weights = WeightsSource("random", seed=seed)
        else:
            pretrained = weights == "pretrained"
            path = spec.pretrained_weights() if pretrained else weights
            digest = weights_sha256(path)
            self.weights = WeightsSource("pretrained" if pretrained else "file", str(path), digest)
            model = load_model(spec, path)
        model.eval().to(self.device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.head = FeatureHead(model, spec.output, spec.library)
        # static shapes: smaller batches are padded to the largest seen, so no recompiles
        self.model = torch.compile(self.head, dynamic=False) if compile else self.head
        self.compiled = compile
        self._largest_batch = 0
        self._rows: dict[int, tuple[Any, Any]] = {}
        self._local = threading.local()  # per-thread preprocessing buffers
        mean = torch.tensor(spec.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(spec.std, device=self.device).view(1, 3, 1, 1)
        self.scale = 1.0 / (255.0 * std)
        self.shift = -mean / std
        with torch.inference_mode():  # eager, so that a compiled model compiles for real batches
            probe = self.preprocess(np.zeros((1, spec.input_size, spec.input_size, 3), np.uint8))
            self.embedding_dim = int(self.head(probe).shape[1])
        if spec.embedding_dim is not None and self.embedding_dim != spec.embedding_dim:
            raise ConfigError(
                f"model preset {spec.key!r} says {spec.embedding_dim}-d features, but the model built from "
                f"it gives {self.embedding_dim}-d: fix the preset's architecture, timm_kwargs or output"
            )

    def preprocess(self, tiles: np.ndarray, *, reuse_buffer: bool = False) -> Any:
        """uint8 (N, H, W, 3) -> normalised float (N, 3, S, S), channels-last, on the device.

        Tiles are resized as the preset says (``resize`` then a centre crop, or straight to the
        input size when they differ; bilinear or bicubic, antialiased), then normalised.
        ``reuse_buffer`` (CPU): write into this thread's buffer from the previous call instead
        of fresh memory (page-faulting a fresh ~20 MB batch costs more than normalising it);
        the result is then only valid until this thread's next call.
        """
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(tiles))
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        n, h, w, _ = x.shape
        spec = self.spec
        size = spec.input_size
        resize = spec.resize or size
        if h != resize or w != resize or (h, w) != (size, size):
            x = x.permute(0, 3, 1, 2).float()
            if (h, w) != (resize, resize):  # the card's Resize (shorter side; tiles are square)
                x = F.interpolate(x, size=(resize, resize), mode=spec.interpolation, antialias=True,
                                  align_corners=False)  # fmt: skip
                if spec.interpolation == "bicubic":  # bicubic overshoots; uint8 images clip
                    x = x.clamp_(0.0, 255.0)
            if resize != size:  # the card's CenterCrop, else straight to the input size
                if spec.center_crop:
                    top, left = (resize - size) // 2, (resize - size) // 2
                    x = x[:, :, top : top + size, left : left + size]
                else:
                    x = F.interpolate(x, size=(size, size), mode=spec.interpolation, antialias=True,
                                      align_corners=False)  # fmt: skip
            return torch.addcmul(self.shift, x, self.scale)
        # (x / 255 - mean) / std on pixel rows (N*H, W*3) with per-column factors: a long
        # contiguous inner loop (broadcasting over a channel axis of 3 is ~3x slower). NHWC
        # float viewed as NCHW is channels-last, the layout the model runs in.
        scale, shift = self._row_factors(w)
        rows = x.view(n * h, w * 3)
        if reuse_buffer and self.device.type == "cpu":
            buffer = getattr(self._local, "buffer", None)
            if buffer is None or buffer.numel() < rows.numel():
                buffer = self._local.buffer = torch.empty(rows.numel())
            rows = buffer[: rows.numel()].view(n * h, w * 3).copy_(rows)
        else:
            rows = rows.float()
        torch.addcmul(shift, rows, scale, out=rows)  # in place, one pass
        return rows.view(n, h, w, 3).permute(0, 3, 1, 2)

    def _row_factors(self, width: int) -> tuple[Any, Any]:
        if width not in self._rows:
            self._rows[width] = (self.scale.flatten().repeat(width), self.shift.flatten().repeat(width))
        return self._rows[width]

    def forward(self, x: Any) -> Any:
        """The model's features of preprocessed tensors (autocast as the precision asks)."""
        import torch

        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        n = x.shape[0]
        if self.compiled and n < self._largest_batch:  # rows are independent in eval mode
            pad = x.new_zeros((self._largest_batch - n, *x.shape[1:]))
            x = torch.cat([x, pad]).contiguous(memory_format=torch.channels_last)
        self._largest_batch = max(self._largest_batch, n)
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            return self.model(x)[:n]

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            features = self.forward(self.preprocess(tiles, reuse_buffer=True))
            return features.float().cpu().numpy()  # a copy: the buffer is free again

    def _library_version(self) -> dict[str, str]:
        if self.spec.library != "transformers":
            return {}
        import transformers

        return {"transformers": transformers.__version__}

    def describe(self) -> dict[str, Any]:
        """Attributes recorded with the features."""
        import timm
        import torch

        return {
            "model": self.spec.model_dump(mode="json"),
            "weights": self.weights.to_dict(),
            "input_size": self.spec.input_size,
            "normalisation": {"mean": list(self.spec.mean), "std": list(self.spec.std)},
            "precision": self.precision,
            "embedding_dim": self.embedding_dim,
            "versions": {"torch": torch.__version__, "timm": timm.__version__, **self._library_version()},
        }
