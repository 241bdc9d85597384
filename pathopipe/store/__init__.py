"""The per-slide Zarr v3 store (output layout schema version 1; see docs/data-format.md)."""

from pathopipe.store.codecs import JPEG_CODEC_NAME, JpegCodec
from pathopipe.store.layout import (
    SCHEMA_VERSION,
    StoreStatus,
    create_slide_store,
    mark_complete,
    open_tiles_for_write,
    read_status,
    write_image,
)

__all__ = [
    "JPEG_CODEC_NAME",
    "SCHEMA_VERSION",
    "JpegCodec",
    "StoreStatus",
    "create_slide_store",
    "mark_complete",
    "open_tiles_for_write",
    "read_status",
    "write_image",
]
