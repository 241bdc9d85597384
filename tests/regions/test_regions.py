"""Regions of interest: annotation formats read right, coverage exact, tiles kept exactly where
the included regions (less the excluded ones) and the tissue rule say, region_fraction equal to
a reference computed here."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import shapely
import zarr
from shapely.geometry import Polygon, box
from typer.testing import CliRunner

from pathopipe.cli.app import app
from pathopipe.errors import RegionsError
from pathopipe.regions import class_fractions, kept_fractions, load_regions
from pathopipe.testing import write_synthetic_slide
from pathopipe.tiling import tissue_fractions

TUMOUR = [(600, 400), (2600, 500), (2200, 1900), (700, 1700)]  # a quadrilateral, level-0 px
HOLE = [(1200, 900), (1500, 900), (1500, 1200), (1200, 1200)]
PEN = [(1800, 300), (2900, 300), (2900, 1000), (1800, 1000)]


def _geojson(path: Path, features: list[tuple[str | None, dict]]) -> Path:
    items = []
    for name, geometry in features:
        properties = {"objectType": "annotation"}
        if name is not None:
            properties["classification"] = {"name": name, "color": [255, 0, 0]}
        items.append({"type": "Feature", "geometry": geometry, "properties": properties})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return path


def _polygon(ring, *holes) -> dict:
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]], *[[*h, h[0]] for h in holes]]}


def _grid(n: int = 12, size: int = 256) -> np.ndarray:
    return np.array([(x, y) for y in range(0, n * size, size) for x in range(0, n * size, size)], np.int64)


def test_readers_and_exact_coverage(tmp_path):
    path = _geojson(
        tmp_path / "a.geojson",
        [
            ("tumour", _polygon(TUMOUR, HOLE)),
            ("pen", {"type": "MultiPolygon", "coordinates": [[[*PEN, PEN[0]]]]}),
            (None, _polygon([(10, 10), (100, 10), (100, 100)])),
        ],
    )
    regions = load_regions(path, (3072, 3072))
    assert regions.classes == ["pen", "tumour", "unclassified"]
    coords = _grid()
    tumour, pen = Polygon(TUMOUR, [HOLE]), Polygon(PEN)
    expected = np.array(
        [
            [box(x, y, x + 256, y + 256).intersection(g).area / 256**2 for g in (tumour, pen)]
            for x, y in coords
        ]
    )
    got = class_fractions(regions, ["tumour", "pen", "absent"], coords, 256)
    np.testing.assert_allclose(got[:, :2], expected, atol=1e-5)
    assert not got[:, 2].any()
    kept = kept_fractions(regions, ["tumour"], ["pen"], coords, 256)
    reference = [
        box(x, y, x + 256, y + 256).intersection(tumour.difference(pen)).area / 256**2 for x, y in coords
    ]
    np.testing.assert_allclose(kept, reference, atol=1e-5)
    np.testing.assert_allclose(
        kept_fractions(regions, [], ["pen"], coords, 256), 1 - expected[:, 1], atol=1e-5
    )
    # ASAP XML: the same pen, as CAMELYON writes it
    points = "".join(f'<Coordinate Order="{i}" X="{x}" Y="{y}"/>' for i, (x, y) in enumerate(PEN))
    (tmp_path / "a.xml").write_text(
        '<?xml version="1.0"?><ASAP_Annotations><Annotations><Annotation Name="A1" Type="Polygon" '
        f'PartOfGroup="pen"><Coordinates>{points}</Coordinates></Annotation>'
        '<Annotation Name="D" Type="Dot" PartOfGroup="pen"><Coordinates><Coordinate Order="0" X="1" Y="1"/>'
        "</Coordinates></Annotation></Annotations></ASAP_Annotations>"
    )
    xml = load_regions(tmp_path / "a.xml", (3072, 3072))
    np.testing.assert_allclose(class_fractions(xml, ["pen"], coords, 256)[:, 0], expected[:, 1], atol=1e-5)
    # a label mask at 1/16 scale: class 2 over a rectangle of whole mask pixels
    import cv2

    labels = np.zeros((192, 192), np.uint8)
    labels[20:60, 30:100] = 2
    cv2.imwrite(str(tmp_path / "a.png"), labels)
    mask = load_regions(tmp_path / "a.png", (3072, 3072))
    assert mask.classes == ["2"]
    rectangle = box(30 * 16, 20 * 16, 100 * 16, 60 * 16)
    reference = [box(x, y, x + 256, y + 256).intersection(rectangle).area / 256**2 for x, y in coords]
    np.testing.assert_allclose(class_fractions(mask, ["2"], coords, 256)[:, 0], reference, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.geojson", "{not json", "not QuPath GeoJSON"),
        ("bad.json", json.dumps({"type": "Point"}), "not a FeatureCollection"),
        ("bad.xml", "<ASAP_Annotations><Annotations>", "not ASAP XML"),
        ("bad.png", "not an image", "not a label image"),
        ("bad.txt", "x", "unknown format '.txt'"),
    ],
)
def test_malformed_annotations_name_the_file_and_the_reason(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(RegionsError, match=message) as found:
        load_regions(tmp_path / name, (1000, 1000))
    assert name in str(found.value)
    with pytest.raises(RegionsError, match="no such file"):
        load_regions(tmp_path / "missing.geojson", (1000, 1000))


TILE = ["--workers", "1", "--set", "tiling.tile_size=128", "--set", "tiling.min_tissue_fraction=0.2"]
REGIONS = [
    "--set",
    "regions.include=[tumour]",
    "--set",
    "regions.exclude=[pen]",
    "--set",
    "regions.min_fraction=0.5",
]


@pytest.fixture(scope="module")
def annotated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("regions")
    write_synthetic_slide(root / "s1.svs", width=3200, height=2200, seed=21, downsamples=(4,), workers=1)
    write_synthetic_slide(root / "s2.svs", width=2400, height=1800, seed=22, downsamples=(4,), workers=1)
    _geojson(root / "s1.geojson", [("tumour", _polygon(TUMOUR, HOLE)), ("pen", _polygon(PEN))])
    (root / "list.csv").write_text("path,annotations\ns1.svs,s1.geojson\ns2.svs,missing.geojson\n")
    return root


def test_tiles_are_kept_exactly_where_the_regions_and_the_tissue_say(annotated, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["tile", str(annotated / "list.csv"), "--out", str(out), *TILE, *REGIONS]
    )
    assert result.exit_code == 1  # s2's annotations are missing: it fails, s1 is done
    with (out / "manifest.csv").open() as fh:
        rows = {r["slide_id"]: r for r in csv.DictReader(fh)}
    assert rows["s1"]["status"] == "done"
    assert rows["s2"]["status"] == "failed" and "missing.geojson: no such file" in rows["s2"]["error"]
    store = zarr.open_group(out / "slides" / "s1.zarr", mode="r")
    coords = np.asarray(store["coords"][:])
    size = store.attrs["tile_size_level0"]
    assert size == 256 and len(coords) > 0
    tumour, pen = Polygon(TUMOUR, [HOLE]), Polygon(PEN)
    kept_region = tumour.difference(pen)
    # every candidate of the grid: tissue rule (the store's own mask) and region rule (shapely, here)
    columns, rows_ = store.attrs["grid"]["columns"], store.attrs["grid"]["rows"]
    grid = np.array([(c * size, r * size) for r in range(rows_) for c in range(columns)], np.int64)
    mask = np.asarray(store["mask"][:])
    tissue = tissue_fractions(mask, tuple(store["mask"].attrs["downsample"]), grid, size)
    boxes = shapely.box(grid[:, 0], grid[:, 1], grid[:, 0] + size, grid[:, 1] + size)
    inside = shapely.area(shapely.intersection(boxes, kept_region)) / size**2
    expected = grid[(tissue >= 0.2) & (inside >= 0.5)]
    assert {tuple(c) for c in coords} == {tuple(c) for c in expected}  # exactly those tiles
    centres = shapely.points(coords[:, 0] + size / 2, coords[:, 1] + size / 2)
    assert shapely.intersects(tumour, centres).mean() > 0.9  # most centres in the tumour, none far off
    # region_fraction: each class's share of each kept tile, against the reference
    fractions = np.asarray(store["region_fraction"][:])
    assert store["region_fraction"].attrs["region_classes"] == ["tumour", "pen"]
    kept_boxes = shapely.box(coords[:, 0], coords[:, 1], coords[:, 0] + size, coords[:, 1] + size)
    reference = np.stack(
        [shapely.area(shapely.intersection(kept_boxes, g)) / size**2 for g in (tumour, pen)], 1
    )
    np.testing.assert_allclose(fractions, reference, atol=1e-5)
    assert (fractions[:, 0] - fractions[:, 1] >= 0.5 - 1e-6).all()  # included less excluded passes
    from pathopipe.output.verify import verify_run

    assert verify_run(out).ok and verify_run(out).arrays >= 4  # region_fraction checked too


def _tile(slide: Path, out: Path, settings: list[str]):
    """`pathopipe tile` on one slide, one worker, with ``settings`` as --set."""
    return CliRunner().invoke(
        app,
        [
            "tile",
            str(slide),
            "--out",
            str(out),
            "--workers",
            "1",
            *[a for s in settings for a in ("--set", s)],
        ],
    )


def test_plan_and_qc_see_the_regions_and_changed_annotations_redo_the_slide(annotated, tmp_path, dask_client):
    import shutil

    from pathopipe.config import load_config
    from pathopipe.loader import open_run
    from pathopipe.parallel.plan import plan_workflow
    from pathopipe.report.qc import REGION_COLOURS, overview

    annotated = Path(shutil.copytree(annotated, tmp_path / "slides"))  # its annotations change below
    settings = [
        "tiling.tile_size=128",
        "tiling.min_tissue_fraction=0.2",
        "regions.include=[tumour]",
        "regions.exclude=[pen]",
        "regions.folder=" + str(annotated),
    ]
    config = load_config(None, settings)
    planned = plan_workflow([annotated / "s1.svs"], config, client=dask_client)  # found in regions.folder
    out = tmp_path / "out"
    result = _tile(annotated / "s1.svs", out, settings)
    assert result.exit_code == 0, result.output
    store = zarr.open_group(out / "slides" / "s1.zarr", mode="r")
    assert planned["per_slide"][0]["n_tiles"] == store.attrs["n_tiles"] > 0
    assert store.attrs["slide_settings"]["annotations"] == str(annotated / "s1.geojson")
    picture = overview(open_run(out), "s1")
    colours = {tuple(c) for c in picture.reshape(-1, 3)}
    assert REGION_COLOURS[0] in colours and REGION_COLOURS[1] in colours  # both classes drawn
    # changed annotations: that slide is redone
    (annotated / "s1-v2.geojson").write_text(
        (annotated / "s1.geojson").read_text().replace("600, 400", "700, 400")
    )
    (annotated / "s1.geojson").replace(annotated / "s1-v1.geojson")
    (annotated / "s1-v2.geojson").replace(annotated / "s1.geojson")
    again = _tile(annotated / "s1.svs", out, settings)
    assert again.exit_code == 0, again.output
    with (out / "manifest.csv").open() as fh:
        assert next(csv.DictReader(fh))["status"] == "done"  # redone, not skipped
