"""Hugging Face transformers models (the [transformers] extra): built from the model's
config.json, their weights loaded by transformers' own ``from_pretrained``, as the card's code
loads them.

Loading through ``from_pretrained`` matters: transformers converts published checkpoints to its
current layout on load (version 5 renamed the ViT and DINOv2 attention layers), so a strict
``load_state_dict`` of a published file would refuse it. Imported only when such a model is built.
"""

from __future__ import annotations

import inspect
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from pathopipe.errors import BackendUnavailableError, ConfigError, WeightsError
from pathopipe.features._spec import ModelSpec

UNUSED = ("pooler.",)  # a pooler the extractor does not use (dropped, as add_pooling_layer=False)


def model_class(spec: ModelSpec) -> Any:
    """The transformers class the preset names (e.g. ``ViTModel``), or a clear error."""
    try:
        import transformers
    except ImportError as err:
        raise BackendUnavailableError(
            f"model {spec.key!r} is a Hugging Face transformers model; install the extra: "
            f"pip install 'pathopipe[transformers]' ({err})"
        ) from err
    found = getattr(transformers, spec.architecture, None)
    if found is None or not hasattr(found, "config_class"):
        raise ConfigError(f"model {spec.key!r}: transformers has no model class {spec.architecture!r}")
    return found


def model_config(spec: ModelSpec, config_class: Any) -> Any:
    """The model's config.json from the local Hugging Face cache where it is there (what the
    card's ``from_pretrained`` reads), else the preset's ``transformers_config``."""
    if spec.pretrained_hub_id:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(spec.pretrained_hub_id, "config.json")
        if isinstance(found, str):
            return config_class.from_json_file(found)
    return config_class(**spec.transformers_config)


def _without_pooler(cls: Any) -> dict[str, Any]:
    return (
        {"add_pooling_layer": False}
        if "add_pooling_layer" in inspect.signature(cls.__init__).parameters
        else {}
    )


def build(spec: ModelSpec) -> torch.nn.Module:
    """The model with freshly initialised weights (from torch's current random state)."""
    cls = model_class(spec)
    return cls(model_config(spec, cls.config_class), **_without_pooler(cls))


@contextmanager
def _report_dropped() -> Iterator[None]:
    """transformers logs a table of the keys it did not load; :func:`load` checks them itself
    and says what matters, so the table is dropped while loading (the filter is removed after)."""
    logger = logging.getLogger("transformers.modeling_utils")

    def drop(record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in record.getMessage()

    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def load(spec: ModelSpec, path: str | Path) -> torch.nn.Module:
    """The model with the weights file at ``path``, loaded by ``from_pretrained`` (fp32) from a
    folder holding the file and the model's config. Missing keys, unexpected ones (beyond an
    unused pooler) and wrong shapes are errors, never a partial load."""
    cls = model_class(spec)
    path = Path(path).resolve()
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist")
    name = "model.safetensors" if path.suffix == ".safetensors" else "pytorch_model.bin"
    with tempfile.TemporaryDirectory(prefix="pathopipe-weights-") as folder:
        model_config(spec, cls.config_class).save_pretrained(folder)
        os.symlink(path, os.path.join(folder, name))
        try:
            with _report_dropped():
                model, info = cls.from_pretrained(folder, local_files_only=True, output_loading_info=True,
                                                  dtype=torch.float32, **_without_pooler(cls))  # fmt: skip
        except (OSError, RuntimeError, ValueError) as err:
            raise WeightsError(f"weights {path} do not fit {cls.__name__}: {err}") from err
    missing = sorted(info["missing_keys"])
    unexpected = sorted(k for k in info["unexpected_keys"] if not k.startswith(UNUSED))
    if missing or unexpected:
        raise WeightsError(
            f"weights {path} do not fit {cls.__name__}: {len(missing)} missing ({', '.join(missing[:5])}), "
            f"{len(unexpected)} unexpected ({', '.join(unexpected[:5])}). Check that --model matches the "
            "checkpoint"
        )
    return model
