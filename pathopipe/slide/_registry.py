"""Registry of slide backends: each entry holds its reader class, its priority in ``auto`` (lower
first), whether it reads URLs, and its options (a small pydantic model)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pathopipe._registry import Registry
from pathopipe.errors import ConfigError

if TYPE_CHECKING:
    from pathopipe.slide._base import SlideReader

__all__ = ["BackendOptions", "RemoteOptions", "auto_order", "backend_options", "slide_backends"]

slide_backends: Registry[type[SlideReader]] = Registry(
    "slide backend", entry_point_group="pathopipe.slide_backends"
)
DEFAULT_PRIORITY = 100  # plug-ins without a priority are tried after the built-in backends


class BackendOptions(BaseModel):
    """Options of a backend that takes none (the base of every backend's options)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RemoteOptions(BackendOptions):
    """Options of a backend that reads URLs through fsspec."""

    storage_options: dict[str, Any] = Field(default_factory=dict, repr=False)  # may hold credentials
    block_size: int = Field(1 << 20, ge=1, description="bytes per block of the header read cache")


def backend_options(name: str, given: Mapping[str, Any] | None) -> BackendOptions:
    """``given`` checked against backend ``name``'s options model."""
    model: type[BackendOptions] = slide_backends.entry(name).metadata.get("options", BackendOptions)
    try:
        return model.model_validate(dict(given or {}))
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        allowed = ", ".join(model.model_fields) or "none"
        raise ConfigError(f"{name} backend options: {problems} (allowed: {allowed})") from None


def auto_order(*, url: bool = False) -> list[str]:
    """The backends ``auto`` tries, in order (for a URL: only those that read URLs)."""
    entries = sorted(slide_backends, key=lambda e: e.metadata.get("priority", DEFAULT_PRIORITY))
    return [e.name for e in entries if not url or e.metadata.get("urls", False)]
