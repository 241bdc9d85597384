"""Model specifications: the registry of presets (``configs/models/*.yaml``, and packages'
``pathopipe.models`` entry points), any ``timm/<name>``, or a preset YAML file."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pathopipe._cache import remember, remembered
from pathopipe._registry import Registry, did_you_mean
from pathopipe.errors import ConfigError, UnknownNameError

PRESET_DIR = Path(__file__).resolve().parent / "presets"
OutputMode = Literal["pooled", "cls", "cls+mean", "resnet-layer3-pool"]


class ModelSpec(BaseModel):
    """Everything that defines what a feature extractor computes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="store group name features/<key>")
    architecture: str = Field(description="timm model name (library timm) or transformers class (ViTModel)")
    timm_kwargs: dict[str, Any] = Field(default_factory=dict)
    library: Literal["timm", "transformers"] = Field(
        "timm", description="who builds the model: timm, or Hugging Face transformers (the extra)"
    )
    transformers_config: dict[str, Any] = Field(
        default_factory=dict, description="library transformers: the model's config fields (its config.json)"
    )
    output: OutputMode = "pooled"
    input_size: int = Field(224, ge=16, le=4096)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pretrained_hub_id: str | None = Field(None, description="Hugging Face repo of the pretrained weights")
    pretrained_file: str | None = Field(
        None, description="the weights' file in that repo when not model.safetensors or pytorch_model.bin"
    )
    pretrained_url: str | None = Field(
        None, description="weights published as a release, not on the hub: read from torch hub's "
        "checkpoint folder, where the card's torch.hub.load keeps them",
    )  # fmt: skip
    pretrained_repo_type: Literal["model", "dataset"] = Field(
        "model", description="the kind of hub repo pretrained_hub_id is (a model, or a dataset)"
    )
    convert_weights: Literal["none", "dinov2", "timm-vit", "timm-swin"] = Field(
        "none", description="how the card's code converts its checkpoint before the strict load: dinov2, "
        "timm's DINOv2-layout conversion; timm-vit, timm's ViT checkpoint filter (which converts a "
        "DINOv2 layout where it finds one); timm-swin, timm's Swin checkpoint filter (the original "
        "Swin layout, downsampling at the end of a stage)",
    )  # fmt: skip
    hub_config: bool = Field(
        False, description="architecture, model arguments and preprocessing from the config.json of "
        "pretrained_hub_id in the local hub cache, as the card's timm.create_model('hf-hub:...') reads "
        "them; timm_kwargs (the card's arguments) override its model arguments",
    )  # fmt: skip
    licence: str = ""
    description: str = ""
    # the card's preprocessing and use, as data (pathopipe models --details KEY)
    resize: int | None = Field(
        None, ge=16, le=4096,
        description="tiles resized to this side before a centre crop (the card's Resize); None: "
        "resized straight to input_size when they differ",
    )  # fmt: skip
    interpolation: Literal["bilinear", "bicubic"] = Field(
        "bilinear", description="of any resize (antialiased)"
    )
    center_crop: bool = Field(
        False, description="centre-crop input_size after resize (the card's CenterCrop)"
    )
    tile_size: int | None = Field(None, ge=16, le=4096, description="tile size the card recommends (px)")
    mpp: float | None = Field(None, gt=0, le=100, description="resolution the card recommends (µm/px)")
    embedding_dim: int | None = Field(None, ge=1, description="output dimension (checked when built)")
    precision: Literal["fp32", "bf16", "fp16"] | None = Field(None, description="what the authors run")
    source: str = Field("", description="the model card (URL)")

    def card_mismatches(self, tile_size: int, mpp: float | None) -> list[str]:
        """Where tiles of ``tile_size`` px at ``mpp`` µm/px differ from what the model's card
        recommends (the tile size; the resolution beyond 10 %), in words."""
        found = []
        if self.tile_size and tile_size != self.tile_size:
            found.append(
                f"{self.key}: tiles of {tile_size} px; its model card recommends {self.tile_size} px"
            )
        if self.mpp and mpp and abs(mpp - self.mpp) > 0.1 * self.mpp:
            found.append(
                f"{self.key}: tiles at {mpp:.3g} µm/px; its model card recommends {self.mpp:g} µm/px"
            )
        return found

    def pretrained_weights(self) -> Path:
        """Where the card publishes the weights, in the local cache (or an error saying how to
        get them there): the hub repo's file, or a release's file in torch hub's folder."""
        from pathopipe.features._weights import cached_pretrained_file

        return cached_pretrained_file(
            self.pretrained_hub_id, self.key, self.licence, filename=self.pretrained_file,
            url=self.pretrained_url, repo_type=self.pretrained_repo_type,
        )  # fmt: skip

    def identity(self) -> dict[str, Any]:
        """What changes the features, for their hash: the fields before the card's facts, plus
        the preprocessing where it is not the default (hashes of earlier presets stay as they were)."""
        # the weights enter the hash by their sha256, not by where they came from
        informational = {"tile_size", "mpp", "embedding_dim", "precision", "source", "pretrained_file",
                         "pretrained_url", "pretrained_repo_type"}  # fmt: skip
        preprocessing: dict[str, Any] = {"resize": None, "interpolation": "bilinear", "center_crop": False,
                                         "library": "timm", "transformers_config": {},
                                         "convert_weights": "none", "hub_config": False}  # fmt: skip
        dump = self.model_dump(mode="json", exclude=informational)
        if dump["resize"] == self.input_size and not self.center_crop:  # the same as no resize
            dump["resize"] = None
        return {k: v for k, v in dump.items() if k not in preprocessing or v != preprocessing[k]}


def _load_preset(path: Path) -> ModelSpec:
    try:
        return ModelSpec.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (ValidationError, yaml.YAMLError) as err:
        raise ConfigError(f"model preset {path} is invalid: {err}") from err


class _Presets(Registry[ModelSpec]):
    """The model presets: the YAML files shipped in configs/models (read on first use), then
    entry points of installed packages (a :class:`ModelSpec` each)."""

    _shipped_loaded = False

    def load_plugins(self) -> None:
        if not self._shipped_loaded:
            self._shipped_loaded = True
            for path in sorted(PRESET_DIR.glob("*.yaml")):  # includes 'noop' (no model)
                spec = _load_preset(path)
                self.add(spec.key, spec, description=spec.description, source=str(path))
        super().load_plugins()


model_presets: Registry[ModelSpec] = _Presets("model preset", entry_point_group="pathopipe.models")


def list_presets() -> dict[str, ModelSpec]:
    """Preset key -> spec."""
    return {entry.name: entry.obj for entry in model_presets}


def _spec_cache_name() -> str | None:
    """The cache file of resolved ``timm/<name>`` specs, per timm version (None without timm)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"timm-{version('timm')}-specs.json"
    except PackageNotFoundError:
        return None


def _cached_timm_spec(architecture: str) -> ModelSpec | None:
    """The spec resolved by an earlier run with this timm version: reading timm's registry
    means importing timm and torch, ~3 s that a run's driver otherwise spends before anything."""
    name = _spec_cache_name()
    found = remembered(name, architecture) if name else None
    try:
        return ModelSpec.model_validate(found) if found else None
    except ValueError:  # a damaged entry: resolve again
        return None


def _remember_timm_spec(architecture: str, spec: ModelSpec) -> None:
    name = _spec_cache_name()
    if name:
        remember(name, architecture, spec.model_dump(mode="json"))


def _timm_spec(architecture: str) -> ModelSpec:
    cached = _cached_timm_spec(architecture)
    if cached is not None:
        return cached
    spec = _timm_registry_spec(architecture)
    _remember_timm_spec(architecture, spec)
    return spec


def _timm_registry_spec(architecture: str) -> ModelSpec:
    import timm
    from timm.models import get_pretrained_cfg

    if not timm.is_model(architecture):
        hint = did_you_mean(architecture, timm.list_models(), show=lambda near: f"timm/{near}")
        raise UnknownNameError(f"timm has no model {architecture!r}{hint}")
    cfg = get_pretrained_cfg(architecture)
    cfg_dict = cfg.to_dict() if cfg is not None else {}  # type: ignore[no-untyped-call]
    return ModelSpec(
        key="timm-" + re.sub(r"[^A-Za-z0-9._-]", "_", architecture),
        architecture=architecture,
        output="pooled",
        input_size=int(cfg_dict.get("input_size", (3, 224, 224))[-1]),
        mean=tuple(cfg_dict.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg_dict.get("std", (0.229, 0.224, 0.225))),
        pretrained_hub_id=cfg_dict.get("hf_hub_id"),
        description=f"timm {architecture}, pooled pre-logits features",
    )


def _hub_config(repo: str, model_name: str | None = None) -> dict[str, Any]:
    """What a timm model's ``config.json`` in the local Hugging Face cache says: architecture and
    arguments, input size, mean and std, and timm's evaluation transform (``Resize(size /
    crop_pct)``, ``CenterCrop(size)``, with the config's interpolation), as ModelSpec fields."""
    from pathopipe.features._weights import cached_hub_file

    path = cached_hub_file(repo, "config.json", model_name or f"hf-hub:{repo}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        cfg = config.get("pretrained_cfg") or {}
        size = int((cfg.get("input_size") or [3, 224, 224])[-1])
        crop = float(cfg.get("crop_pct") or 1.0)
        return {
            "architecture": str(config["architecture"]),
            "timm_kwargs": dict(config.get("model_args") or {}),
            "input_size": size,
            "mean": tuple(cfg.get("mean") or (0.485, 0.456, 0.406)),
            "std": tuple(cfg.get("std") or (0.229, 0.224, 0.225)),
            "resize": math.floor(size / crop) if crop < 1.0 else size,  # as timm.data.create_transform
            "interpolation": "bilinear" if cfg.get("interpolation") == "bilinear" else "bicubic",
            "center_crop": True,
            "embedding_dim": config.get("num_features"),
        }
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"config.json of hf-hub:{repo} ({path}) is not a timm model config: {err}") from err


def _hub_spec(repo: str) -> ModelSpec:
    """The spec of a timm model published on the Hugging Face hub (``hf-hub:ORG/NAME``), from
    its ``config.json`` in the local cache; pooled features."""
    return ModelSpec(
        key="hf-" + re.sub(r"[^A-Za-z0-9._-]", "_", repo.replace("/", "-")),
        output="pooled",
        pretrained_hub_id=repo,
        source=f"https://huggingface.co/{repo}",
        description=f"timm model hf-hub:{repo} (its config.json), pooled features",
        **_hub_config(repo),
    )


def _with_hub_config(spec: ModelSpec) -> ModelSpec:
    """A ``hub_config`` preset completed from its model's cached config.json: the card's
    ``timm.create_model("hf-hub:...", **card_arguments)`` and ``create_transform``."""
    if not spec.pretrained_hub_id:
        raise ConfigError(f"model preset {spec.key!r} has hub_config but no pretrained_hub_id")
    found = _hub_config(spec.pretrained_hub_id, spec.key)  # its architecture is in config.json
    found["timm_kwargs"] = {**found["timm_kwargs"], **spec.timm_kwargs}
    if spec.embedding_dim is not None:  # the preset's output mode decides the dimension
        found.pop("embedding_dim")
    return ModelSpec.model_validate({**spec.model_dump(), **found})


def _completed(spec: ModelSpec) -> ModelSpec:
    """A preset as it runs: completed from its hub config, its preprocessing checked against the
    card's image processor where that is in the local cache."""
    if spec.hub_config:
        return _with_hub_config(spec)
    if spec.library == "transformers" and spec.pretrained_hub_id:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(spec.pretrained_hub_id, "preprocessor_config.json")
        if isinstance(found, str):  # the card's AutoImageProcessor reads it
            try:
                processor = json.loads(Path(found).read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise ConfigError(f"the image processor configuration of {spec.key!r} ({found}) is "
                                  f"unreadable: {err}; download it again") from err  # fmt: skip
            problems = processor_mismatches(spec, processor)
            if problems:
                raise ConfigError(
                    f"model preset {spec.key!r} disagrees with its card's image processor ({found}): "
                    + "; ".join(problems)
                    + ". The processor is what the model expects: fix the preset"
                )
    return spec


_RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL's codes, as image processors store them


def processor_mismatches(spec: ModelSpec, config: dict[str, Any]) -> list[str]:
    """Where a preset's preprocessing differs from a transformers image processor's
    configuration (``preprocessor_config.json``), for square tiles, in words."""
    found = []
    size = config.get("size") or {}
    side = (size.get("shortest_edge") or size.get("height")) if config.get("do_resize", True) else None
    crop = (config.get("crop_size") or {}).get("height") if config.get("do_center_crop") else None
    final = crop or side
    resize = spec.resize or spec.input_size
    if side is not None and side != resize:
        found.append(f"the processor resizes to {side} px, the preset to {resize} px")
    if final is not None and final != spec.input_size:
        found.append(f"the processor gives {final} px images, the preset {spec.input_size} px")
    if side != final and not spec.center_crop:
        found.append("the processor centre-crops, the preset does not")
    resample = _RESAMPLE.get(config.get("resample", 2), f"PIL resample {config.get('resample')}")
    if side is not None and resample != spec.interpolation:
        found.append(f"the processor resamples {resample}, the preset {spec.interpolation}")
    for name, ours in (("image_mean", spec.mean), ("image_std", spec.std)):
        theirs = config.get(name)
        if theirs is not None and any(abs(a - b) > 1e-6 for a, b in zip(theirs, ours, strict=False)):
            found.append(f"the processor's {name} is {list(theirs)}, the preset's {list(ours)}")
    if not config.get("do_normalize", True) or not config.get("do_rescale", True):
        found.append("the processor does not rescale and normalise as the preset does")
    elif abs(float(config.get("rescale_factor", 1 / 255)) - 1 / 255) > 1e-9:
        found.append(f"the processor rescales by {config.get('rescale_factor')}, not 1/255")
    return found


def resolve_model(name: str) -> ModelSpec:
    """A preset key, ``timm/<architecture>``, ``hf-hub:ORG/NAME`` (a timm model in the local
    Hugging Face cache), or a path to a preset YAML file."""
    if name.startswith("hf-hub:"):
        return _hub_spec(name.removeprefix("hf-hub:"))
    if name.endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.exists():
            raise ConfigError(f"model preset file {name!r} does not exist")
        return _completed(_load_preset(path))
    if name.startswith("timm/"):
        return _timm_spec(name.removeprefix("timm/"))
    if name in model_presets:
        return _completed(model_presets.get(name))
    presets = sorted(model_presets.names())
    raise UnknownNameError(
        f"unknown model {name!r}; presets: {', '.join(presets)}, or any timm model as "
        f"'timm/<name>' (e.g. timm/resnet50) or 'hf-hub:ORG/NAME'{did_you_mean(name, presets)}. "
        "`pathopipe models` lists them"
    )
