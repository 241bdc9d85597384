"""Model specifications: presets from ``configs/models/*.yaml`` and any ``timm/<name>``."""

from __future__ import annotations

import difflib
import re
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pathopipe.errors import ConfigError, UnknownNameError

PRESET_DIR = Path(__file__).resolve().parent / "presets"
OutputMode = Literal["pooled", "cls", "cls+mean", "resnet-layer3-pool"]


class ModelSpec(BaseModel):
    """Everything that defines what a feature extractor computes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="store group name features/<key>")
    architecture: str = Field(description="timm model name")
    timm_kwargs: dict[str, Any] = Field(default_factory=dict)
    output: OutputMode = "pooled"
    input_size: int = Field(224, ge=16, le=4096)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pretrained_hub_id: str | None = Field(None, description="Hugging Face repo of the pretrained weights")
    licence: str = ""
    description: str = ""


def _load_preset(path: Path) -> ModelSpec:
    try:
        return ModelSpec.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (ValidationError, yaml.YAMLError) as err:
        raise ConfigError(f"model preset {path} is invalid: {err}") from err


@cache
def list_presets() -> dict[str, ModelSpec]:
    """Preset key -> spec, from the YAML files shipped in configs/models."""
    specs = [_load_preset(p) for p in sorted(PRESET_DIR.glob("*.yaml"))]  # includes 'noop' (no model)
    return {spec.key: spec for spec in specs}


def _timm_spec(architecture: str) -> ModelSpec:
    import timm
    from timm.models import get_pretrained_cfg

    if not timm.is_model(architecture):
        close = difflib.get_close_matches(architecture, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join('timm/' + c for c in close)}?" if close else ""
        raise UnknownNameError(f"timm has no model {architecture!r}{hint}")
    cfg = get_pretrained_cfg(architecture)
    cfg_dict = cfg.to_dict() if cfg is not None else {}
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


def resolve_model(name: str) -> ModelSpec:
    """A preset key, ``timm/<architecture>``, or a path to a preset YAML file."""
    if name.endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.exists():
            raise ConfigError(f"model preset file {name!r} does not exist")
        return _load_preset(path)
    if name.startswith("timm/"):
        return _timm_spec(name.removeprefix("timm/"))
    presets = list_presets()
    if name in presets:
        return presets[name]
    close = difflib.get_close_matches(name, list(presets), n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise UnknownNameError(
        f"unknown model {name!r}; presets: {', '.join(sorted(presets))}, or any timm model as "
        f"'timm/<name>' (e.g. timm/resnet50){hint}. `pathopipe models` lists them"
    )
