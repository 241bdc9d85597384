"""Registry of slide backends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pathopipe._registry import Registry

if TYPE_CHECKING:
    from pathopipe.slide._base import SlideReader

slide_backends: Registry[type[SlideReader]] = Registry("slide backend")
