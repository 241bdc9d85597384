"""``pathopipe verify OUT``: check every finished store against the manifest, read-only.

Zarr fills a chunk that is missing on disk with the fill value, so a lost shard or feature
chunk reads as white tiles or zero features without any error. Verification therefore checks
that every chunk file (and every entry of every shard index) exists, that each tile chunk
decodes, that shapes and attributes agree, coords lie inside the slide, and features are
finite. Nothing is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from pathopipe import fileio
from pathopipe.errors import CorruptShardError
from pathopipe.output.layout import RunLayout
from pathopipe.output.manifest import read_manifest_records
from pathopipe.store.layout import (
    COORDS,
    FEATURES,
    METADATA,
    REGION_FRACTION,
    SCHEMA_VERSION,
    TILES,
    TISSUE_FRACTION,
    attrs_of,
    child_array,
    child_group,
    open_store_group,
    read_array,
    unsafe_codecs,
)
from pathopipe.store.sharding import EMPTY, ShardIndex, ShardLayout, index_size

FINISHED = ("done", "skipped")
ROWS_PER_READ = 4096


@dataclass(frozen=True)
class Problem:
    slide_id: str
    where: str  # array or attribute, relative to the slide store
    message: str

    def __str__(self) -> str:
        return f"{self.slide_id}: {self.where}: {self.message}"


@dataclass
class VerifyReport:
    out: str | Path
    slides: int = 0
    arrays: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "ok": self.ok, "slides": self.slides, "arrays": self.arrays,
                "problems": [vars(p) for p in self.problems]}  # fmt: skip


class StoreFiles:
    """The files of one slide store (a folder, or a prefix on object storage), listed once."""

    def __init__(self, store: str | Path, options: fileio.Options = None) -> None:
        self.store, self.options = str(store), options

    @cached_property
    def names(self) -> set[str]:
        """Paths of every file under the store, relative to it, with ``/`` separators."""
        return fileio.list_files(self.store, self.options)

    def exists(self, name: str) -> bool:
        return name in self.names

    def read(self, name: str) -> bytes:
        return fileio.read_bytes(fileio.join(self.store, name), self.options)


def _chunk_files(array: zarr.Array[Any], name: str) -> Iterator[tuple[tuple[int, ...], str]]:
    """Every (chunk or shard) grid index of ``array`` and the file (relative to the store) it must be in."""
    grid_shape = array.shards or array.chunks
    counts = [-(-s // c) for s, c in zip(array.shape, grid_shape, strict=True)]
    for index in np.ndindex(*counts):
        yield index, f"{name}/{array.metadata.encode_chunk_key(index)}"


def _check_chunks_present(
    array: zarr.Array[Any], files: StoreFiles, name: str, report: Callable[[str], None]
) -> bool:
    missing = [path for _, path in _chunk_files(array, name) if not files.exists(path)]
    if missing:
        report(f"{len(missing)} chunk file(s) missing (zarr would read them as fill values): {missing[:3]}")
    return not missing


def _check_tiles(
    array: zarr.Array[Any], files: StoreFiles, report: Callable[[str], None], decode: bool
) -> None:
    layout = ShardLayout.of(array.metadata)
    if layout is None or layout.chunk_rows != 1:  # not pathopipe's shard layout: files, then zarr decodes
        if _check_chunks_present(array, files, TILES, report) and decode:
            for start in range(0, array.shape[0], ROWS_PER_READ):
                array[start : start + ROWS_PER_READ]
        return
    per_shard = layout.shard_rows
    decoder = layout.decoder()
    tile = np.empty(array.shape[1:], dtype=array.dtype)
    n = array.shape[0]
    for (shard, *_), path in _chunk_files(array, TILES):
        rows = min(per_shard, n - shard * per_shard)
        where = f"{TILES} shard {shard} ({path})"
        if not files.exists(path):
            report(f"{where}: missing ({rows} tiles would read as white)")
            continue
        data = files.read(path)
        try:
            index = ShardIndex.decode(data, per_shard, where=where)
        except CorruptShardError as err:
            report(str(err))
            continue
        data_bytes = len(data) - index_size(per_shard)
        for row in range(rows):
            offset, length = index.chunk(row)
            if offset == EMPTY:
                report(f"{where}: tile {shard * per_shard + row} absent from the shard")
                break
            if offset + length > data_bytes:
                report(f"{where}: tile {shard * per_shard + row} runs past the chunk data")
                break
            if decode:
                try:
                    decoder(data[offset : offset + length], tile)
                except Exception as err:  # noqa: BLE001 - every decoder error is a finding
                    cause = f"{type(err).__name__}: {err}"
                    report(f"{where}: tile {shard * per_shard + row} does not decode ({cause})")
                    break


def _safe(array: zarr.Array[Any], report: Callable[[str], None]) -> bool:
    """Only arrays with pathopipe's codecs are read (decoding others could run the store's code)."""
    unsafe = unsafe_codecs(array)
    if unsafe:
        report(f"codec(s) {', '.join(unsafe)} are not among pathopipe's; not decoded (could run code)")
    return not unsafe


def _check_features(
    group: zarr.Group, files: StoreFiles, key: str, n: int, report: Callable[[str], None]
) -> int:
    where = f"{FEATURES}/{key}"
    attrs = dict(group.attrs)
    if attrs.get("complete") is not True:
        return 0  # unfinished features are allowed (a later run finishes them); never read
    try:
        array = group[FEATURES]
    except KeyError:
        report(f"{where}: complete but has no features array")
        return 0
    assert isinstance(array, zarr.Array)
    if not _safe(array, lambda message: report(f"{where}/{FEATURES}: {message}")):
        return 1
    dim = attrs.get("embedding_dim")
    if array.shape[0] != n or (dim is not None and array.shape[1] != dim):
        report(f"{where}/{FEATURES}: shape {array.shape}, expected ({n}, {dim})")
        return 1
    if not _check_chunks_present(
        array, files, f"{where}/{FEATURES}", lambda m: report(f"{where}/{FEATURES}: {m}")
    ):
        return 1
    for start in range(0, n, ROWS_PER_READ):
        block = array[start : start + ROWS_PER_READ]
        bad = ~np.isfinite(block)
        if bad.any():
            rows = np.unique(np.nonzero(bad)[0]) + start
            report(f"{where}/{FEATURES}: {len(rows)} row(s) with NaN or infinity, first at row {rows[0]}")
            break
    return 1


def verify_store(
    slide_id: str,
    store: str | Path,
    *,
    decode: bool = True,
    n_tiles: int | None = None,
    options: fileio.Options = None,
) -> tuple[list[Problem], int]:
    """Problems found in one slide store (a folder or a URL), and the number of arrays checked."""
    problems: list[Problem] = []
    arrays = 0

    def reporter(where: str) -> Callable[[str], None]:
        return lambda message: problems.append(Problem(slide_id, where, message))

    files = StoreFiles(store, options)
    try:
        attrs = json.loads(files.read(METADATA)).get("attributes", {})
    except FileNotFoundError:
        return [Problem(slide_id, METADATA, f"store {store} is missing")], 0
    except (OSError, ValueError) as err:
        return [Problem(slide_id, METADATA, f"unreadable ({type(err).__name__}: {err})")], 0
    if attrs.get("complete") is not True:
        problems.append(
            Problem(slide_id, "attrs.complete", "the manifest says done but the store is not complete")
        )
        return problems, 0
    if attrs.get("schema_version") != SCHEMA_VERSION:
        reporter("attrs.schema_version")(f"{attrs.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    group = open_store_group(store, options)
    n = attrs.get("n_tiles")
    if n_tiles is not None and n_tiles != n:
        reporter("attrs.n_tiles")(f"{n}, but the manifest says {n_tiles}")
    coords = child_array(group, COORDS)
    arrays += 1
    if coords.shape != (n, 2):
        reporter(COORDS)(f"shape {coords.shape}, expected ({n}, 2) from attrs.n_tiles")
        return problems, arrays
    if _safe(coords, reporter(COORDS)) and _check_chunks_present(coords, files, COORDS, reporter(COORDS)):
        xy = read_array(coords)
        width, height = attrs.get("dimensions", [None, None])
        if (
            len(xy)
            and width is not None
            and ((xy < 0).any() or (xy[:, 0] >= width).any() or (xy[:, 1] >= height).any())
        ):
            reporter(COORDS)(f"tile corners outside the {width} x {height} px slide")
    fraction = child_array(group, TISSUE_FRACTION) if TISSUE_FRACTION in group else None
    if fraction is not None:
        arrays += 1
        if fraction.shape != (n,):
            reporter(TISSUE_FRACTION)(f"shape {fraction.shape}, expected ({n},)")
    regions = child_array(group, REGION_FRACTION) if REGION_FRACTION in group else None
    if regions is not None:
        arrays += 1
        classes = attrs_of(regions).get("region_classes") or []
        if regions.shape != (n, len(classes)):
            reporter(REGION_FRACTION)(
                f"shape {regions.shape}, expected ({n}, {len(classes)}) from its region_classes"
            )
        elif n and _safe(regions, reporter(REGION_FRACTION)):
            values = read_array(regions)
            if not np.isfinite(values).all() or (values < 0).any() or (values > 1).any():
                reporter(REGION_FRACTION)("values outside [0, 1] or not finite")
    if attrs.get("tile_codec", "jpeg") != "none":
        tiles = child_array(group, TILES) if TILES in group else None
        size = attrs.get("tile_size")
        if tiles is None:
            reporter(TILES)(f"absent, but the store's codec is {attrs.get('tile_codec')!r}")
        else:
            arrays += 1
            if tiles.shape != (n, size, size, 3):
                reporter(TILES)(f"shape {tiles.shape}, expected ({n}, {size}, {size}, 3)")
            elif _safe(tiles, reporter(TILES)):
                _check_tiles(tiles, files, reporter(TILES), decode)
    if FEATURES in group:
        for key, sub in child_group(group, FEATURES).groups():
            arrays += _check_features(sub, files, key, n, reporter(f"{FEATURES}/{key}"))
    return problems, arrays


def verify_run(out: str | Path, *, decode: bool = True, options: fileio.Options = None) -> VerifyReport:
    """Check every slide the manifest lists as done or skipped (read-only); ``out`` a folder or
    a URL (``s3://...``, reached with ``options``)."""
    out = out if fileio.is_url(out) else Path(out)
    report = VerifyReport(out)
    records = read_manifest_records(out, options)
    if not records:
        report.problems.append(Problem("-", RunLayout.MANIFEST, f"no manifest in {out}: nothing to verify"))
        return report
    for record in records:
        if record.status not in FINISHED:
            continue
        report.slides += 1
        store = RunLayout(out).slide_store(record.slide_id)
        problems, arrays = verify_store(
            record.slide_id, store, decode=decode, n_tiles=record.n_tiles, options=options
        )
        report.problems += problems
        report.arrays += arrays
    return report
