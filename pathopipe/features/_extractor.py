"""A timm model turned into a tile feature extractor (uint8 tiles in, float features out).

Imported only when an extractor is created (it imports torch).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import torch

from pathopipe.errors import ConfigError
from pathopipe.features._spec import ModelSpec
from pathopipe.features._weights import (
    WeightsSource,
    cached_pretrained_file,
    load_strict,
    read_state_dict,
    sha256_file,
)

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "fp16"]
_LAYER_NAMES = {"swiglu_packed": ("timm.layers", "SwiGLUPacked")}


def _timm_kwargs(spec: ModelSpec) -> dict[str, Any]:
    import importlib

    kwargs = dict(spec.timm_kwargs)
    if isinstance(kwargs.get("mlp_layer"), str):
        module, name = _LAYER_NAMES[kwargs["mlp_layer"]]
        kwargs["mlp_layer"] = getattr(importlib.import_module(module), name)
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


class ChannelMean(torch.nn.Module):
    """The 'noop' model: per-channel mean, so data-path benchmarks measure no model."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


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
        import timm
        import torch

        self.spec = spec
        self.device = torch.device(resolve_device(device))
        self.precision = precision
        torch.manual_seed(seed)  # random weights are a function of the seed
        if spec.architecture == NOOP:
            model = ChannelMean()
        else:
            model = timm.create_model(spec.architecture, pretrained=False, **_timm_kwargs(spec))
        classifier = ("fc", "head", "classifier", "head.fc")
        if weights == "random":
            self.weights = WeightsSource("random", seed=seed)
        else:
            path = (
                cached_pretrained_file(spec.pretrained_hub_id, spec.key)
                if weights == "pretrained"
                else weights
            )
            self.weights = WeightsSource("pretrained" if weights == "pretrained" else "file", str(path),
                                         sha256_file(path))  # fmt: skip
            load_strict(model, read_state_dict(path), source=str(path), classifier=classifier)
        model.eval().to(self.device, memory_format=torch.channels_last)
        self.model = torch.compile(model) if compile else model
        self._raw_model = model
        mean = torch.tensor(spec.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(spec.std, device=self.device).view(1, 3, 1, 1)
        self.scale = 1.0 / (255.0 * std)
        self.shift = -mean / std
        self.embedding_dim = int(self(np.zeros((1, spec.input_size, spec.input_size, 3), np.uint8)).shape[1])

    def preprocess(self, tiles: np.ndarray) -> Any:
        """uint8 (N, H, W, 3) -> normalised float (N, 3, S, S), channels-last, on the device.

        Tiles of another size than the model's input are resized (bilinear, antialiased).
        """
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(tiles))
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        # NHWC uint8 viewed as NCHW is already channels-last; ops below keep that layout
        x = x.permute(0, 3, 1, 2)
        size = self.spec.input_size
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(
                x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
            return torch.addcmul(self.shift, x, self.scale)
        # (x / 255 - mean) / std as one multiply-add on the converted tensor
        return torch.addcmul(self.shift, x.float(), self.scale)

    def _forward(self, x: Any) -> Any:
        model, raw = self.model, self._raw_model
        mode = self.spec.output
        if mode == "pooled":
            return model(x)
        if mode == "resnet-layer3-pool":
            x = raw.maxpool(raw.act1(raw.bn1(raw.conv1(x))))
            return raw.layer3(raw.layer2(raw.layer1(x))).mean(dim=(2, 3))
        tokens = raw.forward_features(x)
        if mode == "cls":
            return tokens[:, 0]
        prefix = getattr(raw, "num_prefix_tokens", 1)
        import torch

        return torch.cat([tokens[:, 0], tokens[:, prefix:].mean(dim=1)], dim=1)

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        import torch

        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        with torch.inference_mode():
            x = self.preprocess(tiles)
            if dtype is not None:
                with torch.autocast(self.device.type, dtype=dtype):
                    out = self._forward(x)
            else:
                out = self._forward(x)
            return out.float().cpu().numpy()

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
            "versions": {"torch": torch.__version__, "timm": timm.__version__},
        }
