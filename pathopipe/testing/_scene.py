"""Procedural H&E-like tissue scene, rendered tile by tile at level-0 resolution.

The scene is defined by a low-resolution *tissue field* (positive inside tissue) and by
nuclei placed per cell of a fixed grid with a seed derived from the cell index, so any
tile can be rendered independently and neighbouring tiles join without seams.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FIELD_DOWNSAMPLE = 32  # level-0 pixels per tissue-field pixel
NUCLEUS_CELL = 128  # level-0 pixels per nucleus-placement cell
TEXTURE_SIZE = 1024  # side of the periodic noise textures

BACKGROUND_RGB = np.array([243.0, 241.0, 246.0], dtype=np.float32)
STROMA_RGB = np.array([232.0, 158.0, 196.0], dtype=np.float32)
CYTOPLASM_RGB = np.array([214.0, 134.0, 186.0], dtype=np.float32)
NUCLEUS_RGB = np.array([88.0, 58.0, 142.0], dtype=np.float32)


def _periodic_noise(rng: np.random.Generator, size: int, scale: float, aniso: float = 1.0) -> np.ndarray:
    """Smooth periodic noise in [-1, 1], made in the frequency domain."""
    white = rng.standard_normal((size, size))
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    envelope = np.exp(-((fx * scale) ** 2 + (fy * scale * aniso) ** 2))
    field = np.real(np.fft.ifft2(np.fft.fft2(white) * envelope))
    field /= np.abs(field).max() + 1e-9
    return field.astype(np.float32)


@dataclass
class TissueScene:
    """Everything needed to render any tile of a synthetic slide."""

    width: int
    height: int
    seed: int
    field: np.ndarray  # float32 (fh, fw), >0 inside tissue, sampled at pixel centres
    texture_fine: np.ndarray
    texture_fibre: np.ndarray
    texture_cellular: np.ndarray

    @classmethod
    def create(cls, width: int, height: int, *, seed: int = 0, islands: int | None = None) -> TissueScene:
        """Make a scene with ``islands`` tissue islands (``None``: chosen from the seed; 0: blank)."""
        rng = np.random.default_rng(seed)
        fw = max(2, -(-width // FIELD_DOWNSAMPLE))
        fh = max(2, -(-height // FIELD_DOWNSAMPLE))
        if islands is None:
            islands = int(rng.integers(3, 7))
        yy, xx = np.mgrid[0:fh, 0:fw].astype(np.float32)
        xx = (xx + 0.5) / fw
        yy = (yy + 0.5) / fh
        aspect = width / height
        field = np.full((fh, fw), -1.0, dtype=np.float32)
        for _ in range(islands):
            cx, cy = rng.uniform(0.18, 0.82, size=2)
            a = rng.uniform(0.12, 0.25)
            b = a * rng.uniform(0.5, 1.0)
            theta = rng.uniform(0, np.pi)
            dx = (xx - cx) * aspect
            dy = yy - cy
            u = dx * np.cos(theta) + dy * np.sin(theta)
            v = -dx * np.sin(theta) + dy * np.cos(theta)
            field = np.maximum(field, 1.0 - np.sqrt((u / a) ** 2 + (v / b) ** 2))
        if islands:
            wobble = cv2.resize(_periodic_noise(rng, 256, 18.0), (fw, fh), interpolation=cv2.INTER_LINEAR)
            field = field + 0.35 * wobble
        # keep a background margin at the border, as on a real glass slide
        margin = np.minimum.reduce([xx, 1 - xx, yy, 1 - yy]) * 20 - 0.5
        field = np.minimum(field, margin.astype(np.float32))
        return cls(
            width=width,
            height=height,
            seed=seed,
            field=field.astype(np.float32),
            texture_fine=_periodic_noise(rng, TEXTURE_SIZE, 300.0),
            texture_fibre=_periodic_noise(rng, TEXTURE_SIZE, 120.0, aniso=0.15),
            texture_cellular=_periodic_noise(rng, TEXTURE_SIZE, 8.0),
        )

    def truth_mask(self) -> np.ndarray:
        """Ground-truth tissue mask at :data:`FIELD_DOWNSAMPLE` (bool, (fh, fw))."""
        return self.field > 0

    def _crop(self, texture: np.ndarray, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        ys = (np.arange(y0, y0 + h) % TEXTURE_SIZE)[:, None]
        xs = (np.arange(x0, x0 + w) % TEXTURE_SIZE)[None, :]
        return texture[ys, xs]

    def _tissue_alpha(self, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        gx = (np.arange(x0, x0 + w, dtype=np.float32) + 0.5) / FIELD_DOWNSAMPLE - 0.5
        gy = (np.arange(y0, y0 + h, dtype=np.float32) + 0.5) / FIELD_DOWNSAMPLE - 0.5
        map_x = np.broadcast_to(gx[None, :], (h, w)).astype(np.float32)
        map_y = np.broadcast_to(gy[:, None], (h, w)).astype(np.float32)
        value = cv2.remap(self.field, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # about two level-0 pixels of anti-aliased edge
        return np.clip(0.5 + value * (FIELD_DOWNSAMPLE / 2.0), 0.0, 1.0)

    def _tile_has_tissue(self, x0: int, y0: int, w: int, h: int) -> bool:
        fx0 = max(0, x0 // FIELD_DOWNSAMPLE - 1)
        fy0 = max(0, y0 // FIELD_DOWNSAMPLE - 1)
        fx1 = (x0 + w) // FIELD_DOWNSAMPLE + 2
        fy1 = (y0 + h) // FIELD_DOWNSAMPLE + 2
        block = self.field[fy0:fy1, fx0:fx1]
        return block.size > 0 and float(block.max()) > -0.05

    def _nuclei(self, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """Nucleus coverage in [0, 1] for the tile, from nuclei of all cells that reach it."""
        canvas = np.zeros((h, w), dtype=np.uint8)
        reach = 24
        cx0 = (x0 - reach) // NUCLEUS_CELL
        cy0 = (y0 - reach) // NUCLEUS_CELL
        cx1 = (x0 + w + reach) // NUCLEUS_CELL
        cy1 = (y0 + h + reach) // NUCLEUS_CELL
        for cy in range(cy0, cy1 + 1):
            for cx in range(cx0, cx1 + 1):
                if cx < 0 or cy < 0:
                    continue
                rng = np.random.default_rng((self.seed, cx, cy))
                density = self.texture_cellular[
                    (cy * NUCLEUS_CELL) % TEXTURE_SIZE, (cx * NUCLEUS_CELL) % TEXTURE_SIZE
                ]
                count = int(rng.poisson(10 + 22 * max(0.0, float(density))))
                if count == 0:
                    continue
                px = rng.uniform(0, NUCLEUS_CELL, count) + cx * NUCLEUS_CELL - x0
                py = rng.uniform(0, NUCLEUS_CELL, count) + cy * NUCLEUS_CELL - y0
                ra = rng.uniform(5.0, 10.0, count)
                rb = ra * rng.uniform(0.55, 1.0, count)
                angle = rng.uniform(0, 180, count)
                shade = rng.integers(150, 256, count)
                for i in range(count):
                    if -reach < px[i] < w + reach and -reach < py[i] < h + reach:
                        cv2.ellipse(
                            canvas,
                            (int(px[i] * 4), int(py[i] * 4)),
                            (int(ra[i] * 4), int(rb[i] * 4)),
                            float(angle[i]),
                            0,
                            360,
                            int(shade[i]),
                            thickness=-1,
                            lineType=cv2.LINE_AA,
                            shift=2,
                        )
        return canvas.astype(np.float32) * (1.0 / 255.0)

    def render(self, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """Render the level-0 region at (x0, y0) of size (w, h) as uint8 (h, w, 3)."""
        fine = self._crop(self.texture_fine, x0, y0, w, h)[..., None]
        if not self._tile_has_tissue(x0, y0, w, h):
            out = BACKGROUND_RGB + 2.5 * fine
            return np.clip(out, 0, 255).astype(np.uint8)
        alpha = self._tissue_alpha(x0, y0, w, h)[..., None]
        fibre = self._crop(self.texture_fibre, x0, y0, w, h)[..., None]
        cellular = self._crop(self.texture_cellular, x0, y0, w, h)[..., None]
        mix = np.clip(0.5 + 0.5 * cellular, 0, 1)
        tissue = STROMA_RGB * (1 - mix) + CYTOPLASM_RGB * mix
        tissue = tissue * (1.0 - 0.12 * fibre) + 6.0 * fine
        nuclei = self._nuclei(x0, y0, w, h)[..., None] * alpha
        out = BACKGROUND_RGB * (1 - alpha) + tissue * alpha
        out = out * (1 - nuclei) + (NUCLEUS_RGB + 18.0 * fine) * nuclei
        return np.clip(out, 0, 255).astype(np.uint8)
