"""Synthetic slide/mask fixtures shared by the slide, tiling, patch and feature tests (plus checks of the fixtures).

A slide is an H&E-coloured ellipse of textured tissue on a white background, written the way grand-challenge writes
WSIs (pyvips tiled JPEG pyramid with cm resolution tags); its mask is the same ellipse at 4 µm/px.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide
import tifffile

from chimera_surv.writers import write_mask, write_wsi

SLIDE_MPP = 0.25
MASK_MPP = 4.0
MASK_SCALE = int(MASK_MPP / SLIDE_MPP)


def tissue_truth(height: int = 3072, width: int = 4096, centre: tuple[float, float] = (0.5, 0.5),
                 radii: tuple[float, float] = (0.33, 0.33)) -> np.ndarray:
    """Boolean ellipse (height, width): the ground-truth tissue region at level 0."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cy, cx = centre[0] * height, centre[1] * width
    return ((yy - cy) / (radii[0] * height)) ** 2 + ((xx - cx) / (radii[1] * width)) ** 2 < 1


def tissue_rgb(truth: np.ndarray, seed: int = 0) -> np.ndarray:
    """Pink/purple texture inside `truth`, near-white glass outside."""
    rng = np.random.default_rng(seed)
    height, width = truth.shape
    rgb = np.full((height, width, 3), 238, np.uint8)
    coarse = rng.integers(0, 80, (height // 16 + 1, width // 16 + 1, 3)).astype(np.uint8)
    texture = np.repeat(np.repeat(coarse, 16, 0), 16, 1)[:height, :width]
    base = np.array([140, 50, 130], np.uint8)
    rgb[truth] = base + texture[truth]
    return rgb


def make_slide(directory: Path, name: str = "slide", height: int = 3072, width: int = 4096, seed: int = 0,
               resolution: bool = True, mask_values: int = 1, **ellipse: object) -> tuple[Path, Path, np.ndarray]:
    """(wsi path, mask path, truth) for a synthetic slide at 0.25 µm/px and its 4 µm/px mask."""
    truth = tissue_truth(height, width, **ellipse)
    wsi = write_wsi(directory / f"{name}.tif", tissue_rgb(truth, seed), SLIDE_MPP, resolution=resolution)
    mask = truth[MASK_SCALE // 2::MASK_SCALE, MASK_SCALE // 2::MASK_SCALE].astype(np.uint8) * mask_values
    mask_path = write_mask(directory / f"{name}_mask.tif", mask, MASK_MPP)
    return wsi, mask_path, truth


def corrupt_tile(path: Path, out: Path, tile_index: int, page: int = 0) -> Path:
    """A copy of `path` with one tile of `page` overwritten by zeros (an undecodable JPEG)."""
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[page].dataoffsets[tile_index]
        count = tif.pages[page].databytecounts[tile_index]
    data = bytearray(path.read_bytes())
    data[offset:offset + count] = bytes(count)
    out.write_bytes(bytes(data))
    return out


def test_fixture_is_a_pyramid_openslide_reads_with_mpp(tmp_path: Path) -> None:
    wsi, mask, truth = make_slide(tmp_path)
    with openslide.OpenSlide(str(wsi)) as slide:
        assert slide.level_dimensions[0] == (4096, 3072)
        assert slide.level_count >= 3
        assert abs(float(slide.properties["openslide.mpp-x"]) - SLIDE_MPP) < 1e-6
    with openslide.OpenSlide(str(mask)) as slide:
        assert slide.level_dimensions[0] == (4096 // MASK_SCALE, 3072 // MASK_SCALE)
    assert 0.2 < truth.mean() < 0.5
