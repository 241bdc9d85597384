"""Multi-file slides in folders: a DICOM WSI series is one slide, named by its folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pathopipe.cli.app import app
from pathopipe.discovery import find_slides, source_bytes
from pathopipe.ids import slide_ids

FORMATS = Path(__file__).resolve().parents[3] / "shared" / "slides" / "formats"


def _dicom(path: Path, series: str, image_type: list[str]) -> None:
    """A DICOM file with the header discovery reads (series UID, image type); no pixels."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy Image
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = series
    ds.ImageType = image_type
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def test_a_dicom_series_is_one_slide_named_by_its_folder(tmp_path):
    case = tmp_path / "case-17"
    _dicom(case / "a_label.dcm", "1.2.3.1", ["ORIGINAL", "PRIMARY", "LABEL", "NONE"])
    _dicom(case / "b_level0.dcm", "1.2.3.1", ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"])
    _dicom(case / "c_level1.dcm", "1.2.3.1", ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"])
    _dicom(tmp_path / "case-18" / "x.dicom", "1.2.3.2", ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"])
    (tmp_path / "case-19").mkdir()
    (tmp_path / "case-19" / "broken.dcm").write_text("not DICOM\n")
    found = find_slides([tmp_path])
    # one file per series, a VOLUME image (OpenSlide reads the rest of the series from its folder)
    assert found == [
        case / "b_level0.dcm",
        tmp_path / "case-18" / "x.dicom",
        tmp_path / "case-19" / "broken.dcm",
    ]
    assert slide_ids(found) == ["case-17", "case-18", "case-19"]
    # two series in one folder: two slides, told apart
    _dicom(case / "d_other.dcm", "1.2.3.9", ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"])
    two = [p for p in find_slides([case])]
    assert two == [case / "b_level0.dcm", case / "d_other.dcm"]
    ids = slide_ids(two)
    assert len(set(ids)) == 2 and all(i.startswith("case-17-") for i in ids)
    # a slide's bytes are its whole series', not the one file OpenSlide is given
    series = [case / n for n in ("a_label.dcm", "b_level0.dcm", "c_level1.dcm")]
    assert source_bytes(case / "b_level0.dcm") == sum(p.stat().st_size for p in series)
    assert source_bytes(case / "d_other.dcm") == (case / "d_other.dcm").stat().st_size
    assert source_bytes(tmp_path / "case-19" / "broken.dcm") == len("not DICOM\n")
    mirax = tmp_path / "m" / "slide.mrxs"  # a MIRAX index with its data folder
    (mirax.parent / "slide").mkdir(parents=True)
    mirax.write_bytes(b"x" * 10)
    (mirax.parent / "slide" / "Data0000.dat").write_bytes(b"y" * 100)
    assert source_bytes(mirax) == 110


@pytest.mark.real_slide
def test_the_real_dicom_folders_tile_as_one_slide_each(tmp_path):
    if not (FORMATS / "dicom-jpeg").exists():
        pytest.skip(f"{FORMATS} not available")
    found = find_slides([FORMATS / "dicom-boxes", FORMATS / "dicom-jpeg"])
    assert [p.name for p in found] == ["boxes_0.dcm", "jpeg.dicom"]  # boxes_1.dcm: the same series' thumbnail
    boxes = FORMATS / "dicom-boxes"
    assert source_bytes(found[0]) == sum(p.stat().st_size for p in boxes.glob("*.dcm"))
    result = CliRunner().invoke(
        app,
        [
            "tile",
            str(FORMATS / "dicom-jpeg"),
            "--out",
            str(tmp_path / "out"),
            "--workers",
            "1",
            "--set",
            "tiling.target_mpp=16.783",
            "--set",
            "tiling.tile_size=32",
            "--set",
            "tiling.min_tissue_fraction=0.01",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = (tmp_path / "out" / "manifest.csv").read_text().splitlines()
    assert len(manifest) == 2 and manifest[1].startswith("dicom-jpeg,") and ",done," in manifest[1]


@pytest.mark.real_slide
def test_unsupported_files_get_a_plain_reason_per_backend_and_no_raw_warnings(tmp_path):
    import re
    import warnings

    from pathopipe.errors import SlideOpenError
    from pathopipe.slide import open_slide

    if not (FORMATS / "ome-4d-series.ome.tiff").exists():
        pytest.skip(f"{FORMATS} not available")
    with pytest.raises(SlideOpenError) as refused:
        open_slide(FORMATS / "ome-4d-series.ome.tiff")  # refused from its axes before any backend
    assert "7 time points, 5 z-planes (axes TZYX)" in str(refused.value)
    cut = tmp_path / "cut.svs"
    cut.write_bytes((FORMATS.parent / "cmu-1-small-region.svs").read_bytes()[:100_000])
    with pytest.raises(SlideOpenError) as refused:
        open_slide(cut)
    message = str(refused.value)
    assert set(refused.value.causes) == {"tiff", "openslide", "tiffslide"}
    assert "cut short or damaged" in message and "not a format it reads" in message
    assert not re.findall(r"\b[A-Z][A-Za-z]+(?:Error|Exception)\b", message)  # no library exception names
    assert "index 0" not in message
    with warnings.catch_warnings(record=True) as caught:  # this test's own capture
        warnings.simplefilter("always")
        with open_slide(FORMATS / "fluorescence-dapi.ndpi") as slide:
            assert slide.info.backend == "openslide" and slide.info.vendor == "hamamatsu"
    assert not [w for w in caught if "hamamatsu" in str(w.message)]  # tiffslide never parsed it
