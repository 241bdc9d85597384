"""What an extraction computes and how: :class:`ExtractionSettings`, built from a run's
configuration (the ``features:`` section) in one place, :func:`extraction_settings`."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pathopipe.errors import ConfigError
from pathopipe.features._spec import ModelSpec, resolve_model
from pathopipe.features._weights import weights_sha256

if TYPE_CHECKING:
    from pathopipe.config import RunConfig

__all__ = ["ExtractionSettings", "check_settings", "extraction_settings"]


@dataclass(frozen=True)
class ExtractionSettings:
    """What to compute (model, weights, precision, dtype) and how (batch, device, threads)."""

    model: ModelSpec
    weights: str = "pretrained"  # "pretrained" (the hub cache), "random" (asked for) or a file path
    seed: int = 0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    feature_dtype: Literal["float16", "float32"] = "float16"
    batch_size: int = 32
    device: str = "auto"
    torch_threads: int | None = None
    compile: bool = False
    weights_sha256: str | None = None  # filled in by the client for file weights
    gpu_resource: bool | None = None  # tasks require Dask resource GPU=1 (None: when device is cuda)
    decode_threads: int = 0  # tile decode threads per task (0: 1 on CPU, auto on CUDA)

    def needs_gpu_resource(self) -> bool:
        return self.gpu_resource if self.gpu_resource is not None else self.device.startswith("cuda")

    def output_hash(self) -> str:
        """Hash of everything that changes the feature values (not batch size or device)."""
        identity = {
            "model": self.model.identity(),
            # pretrained weights and files by their sha256: other weights never mix with old features
            "weights": "random" if self.weights == "random" else self.weights_sha256,
            "seed": self.seed if self.weights == "random" else None,
            "precision": self.precision,
            "feature_dtype": self.feature_dtype,
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def extraction_settings(config: RunConfig, *, gpu_workers: bool = False) -> tuple[ExtractionSettings, ...]:
    """The ``features:`` section as one settings object per model, in the order listed.

    ``gpu_workers``: the cluster has workers offering ``GPU``; unless the device is ``cpu``,
    extraction tasks then require ``GPU=1`` and run on the device those workers see. Torch
    threads default to the cores per worker on a local cluster.
    """
    f, cluster = config.features, config.cluster
    if len(set(f.models)) != len(f.models):
        raise ConfigError(f"features.models lists a model twice: {f.models}")
    on_gpu = gpu_workers and f.device != "cpu"
    threads = f.torch_threads
    if threads is None and cluster.kind == "local":
        threads = max(1, (os.cpu_count() or 1) // max(1, cluster.n_workers or os.cpu_count() or 1))
    return tuple(
        ExtractionSettings(
            model=resolve_model(name),
            weights=f.weights,
            seed=f.seed,
            precision=f.precision,
            feature_dtype=f.dtype,
            batch_size=f.batch_size,
            device="cuda" if on_gpu and f.device == "auto" else f.device,
            torch_threads=threads,
            compile=f.compile,
            gpu_resource=on_gpu,
            decode_threads=f.decode_threads,
        )
        for name in f.models
    )


def check_settings(settings: ExtractionSettings, *, local: bool) -> ExtractionSettings:
    """Check weights exist before any work starts; record a weights file's sha256.

    ``local``: the workers run on this machine and see its devices, so ``auto`` is resolved here.
    """
    if settings.device == "auto" and local:
        from pathopipe.features._extractor import resolve_device

        settings = replace(settings, device=resolve_device("auto"))
    if settings.model.architecture == "noop":  # no parameters: nothing to load
        return replace(settings, weights="random")
    if settings.weights == "pretrained":
        found = settings.model.pretrained_weights()
        if settings.weights_sha256 is None:
            settings = replace(settings, weights_sha256=weights_sha256(found))
    elif settings.weights != "random":
        if not Path(settings.weights).is_file():
            raise ConfigError(
                f"weights file {settings.weights!r} does not exist (weights: random, pretrained or a file)"
            )
        if settings.weights_sha256 is None:
            settings = replace(settings, weights=str(Path(settings.weights).resolve()),
                               weights_sha256=weights_sha256(settings.weights))  # fmt: skip
    return settings
