import cv2
import numpy as np

from pathopipe.slide import open_slide, read_downsampled
from pathopipe.tissue import OtsuTissueConfig, detect_tissue


def _iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def test_detects_synthetic_islands(aperio_slide):
    with open_slide(aperio_slide.path) as slide:
        image, _ = read_downsampled(slide, 32)
    mask = detect_tissue(image, mpp=0.25 * 32, config=OtsuTissueConfig())
    truth = aperio_slide.truth_mask[: mask.shape[0], : mask.shape[1]]
    assert _iou(mask, truth) > 0.9


def test_blank_slide_has_no_tissue(blank_slide):
    with open_slide(blank_slide.path) as slide:
        image, _ = read_downsampled(slide, 16)
    assert not detect_tissue(image, mpp=4.0, config=OtsuTissueConfig()).any()


def test_ihc_like_staining():
    # DAB brown and haematoxylin blue blobs on glass: saturation finds both
    rng = np.random.default_rng(0)
    image = np.full((400, 400, 3), 240, np.uint8) + rng.integers(0, 6, (400, 400, 3), dtype=np.uint8)
    cv2.circle(image, (120, 120), 70, (150, 100, 60), -1)  # brown
    cv2.circle(image, (290, 280), 80, (120, 130, 190), -1)  # blue
    truth = np.zeros((400, 400), np.uint8)
    cv2.circle(truth, (120, 120), 70, 1, -1)
    cv2.circle(truth, (290, 280), 80, 1, -1)
    mask = detect_tissue(image, mpp=8.0, config=OtsuTissueConfig())
    assert _iou(mask, truth.astype(bool)) > 0.9


def test_small_objects_dropped_and_holes_filled():
    image = np.full((300, 300, 3), 245, np.uint8)
    cv2.rectangle(image, (50, 50), (250, 250), (200, 110, 170), -1)
    cv2.rectangle(image, (140, 140), (150, 150), (245, 245, 245), -1)  # small hole
    cv2.circle(image, (20, 280), 3, (200, 110, 170), -1)  # speck
    cfg = OtsuTissueConfig(
        median_blur_um=0, closing_um=0, min_object_area_um2=50 * 64, min_hole_area_um2=200 * 64
    )
    mask = detect_tissue(image, mpp=8.0, config=cfg)
    assert mask[145, 145] and not mask[280, 20]
