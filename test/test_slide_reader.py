"""open_slide / read_tissue_mask: spacing with fallbacks, levels, regions, masks, and bad files."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from test_slide_fixtures import MASK_SCALE, corrupt_tile, make_slide, tissue_rgb

from chimera_surv.readers.slide import (
    SlideError,
    estimate_tissue_mask,
    mpp_from_properties,
    open_slide,
    read_tissue_mask,
)
from chimera_surv.writers import write_mask


@pytest.fixture(scope="module")
def slide_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    return make_slide(tmp_path_factory.mktemp("slide"))


def test_mpp_levels_and_best_level(slide_files) -> None:
    wsi_path, _, _ = slide_files
    with open_slide(wsi_path) as wsi:
        assert wsi.mpp == pytest.approx((0.25, 0.25), rel=1e-6)
        assert wsi.mpp_source == "properties"
        assert wsi.dimensions == (4096, 3072)
        assert wsi.level_downsamples[:3] == pytest.approx([1.0, 2.0, 4.0])
        assert wsi.best_level(0.5) == 1
        assert wsi.best_level(1.0) == 2
        assert wsi.best_level(0.6) == 1  # never coarser than the target
        assert wsi.best_level(0.26) == 0  # within 5 % counts as the level's own spacing
        assert wsi.best_level(0.1) == 0


@pytest.mark.parametrize("props, expected", [
    ({"tiff.ResolutionUnit": "centimeter", "tiff.XResolution": "40000", "tiff.YResolution": "40000"}, (0.25, 0.25)),
    ({"tiff.ResolutionUnit": "inch", "tiff.XResolution": "50800", "tiff.YResolution": "50800"}, (0.5, 0.5)),
    ({"openslide.mpp-x": "0.243", "openslide.mpp-y": "0.244"}, (0.243, 0.244)),
    ({"tiff.ResolutionUnit": "inch", "tiff.XResolution": "25.4", "tiff.YResolution": "25.4"}, None),  # 1000 µm
    ({"tiff.ResolutionUnit": "none", "tiff.XResolution": "1", "tiff.YResolution": "1"}, None),
    ({}, None),
])
def test_mpp_from_properties(props, expected) -> None:
    found = mpp_from_properties(props)
    if expected is None:
        assert found is None
    else:
        assert found == pytest.approx(expected)


def test_region_matches_the_written_pixels(slide_files) -> None:
    wsi_path, _, truth = slide_files
    source = tissue_rgb(truth)
    with open_slide(wsi_path) as wsi:
        region = wsi.read_region(1024, 1024, 0, 300, 200)
        assert region.shape == (200, 300, 3) and region.dtype == np.uint8
        assert np.abs(region.astype(int) - source[1024:1224, 1024:1324]).mean() < 8  # JPEG Q70
        outside = wsi.read_region(4000, 3000, 0, 200, 200)  # partly beyond the slide: white, not black
        assert outside[150:, 150:].min() == 255


def test_slide_without_resolution_fails_clearly_unless_assumed(tmp_path: Path) -> None:
    wsi_path, _, _ = make_slide(tmp_path, height=512, width=512, resolution=False)
    with pytest.raises(SlideError, match="no usable resolution"):
        open_slide(wsi_path)
    with open_slide(wsi_path, assume_mpp=0.25) as wsi:
        assert wsi.mpp == (0.25, 0.25) and wsi.mpp_source == "assumed"


def test_truncated_and_missing_files_fail_fast(tmp_path: Path, slide_files) -> None:
    wsi_path, _, _ = slide_files
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(wsi_path.read_bytes()[: wsi_path.stat().st_size // 2])
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"II*\x00" + bytes(1000))
    started = time.perf_counter()
    for bad in (truncated, garbage, tmp_path / "absent.tif"):
        with pytest.raises(SlideError):
            open_slide(bad)
    assert time.perf_counter() - started < 10


def test_corrupt_tile_raises_then_the_handle_recovers(tmp_path: Path, slide_files) -> None:
    wsi_path, _, _ = slide_files
    bad = corrupt_tile(wsi_path, tmp_path / "bad.tif", tile_index=5)  # level 0, tile column 5 of row 0
    with open_slide(bad) as wsi:
        with pytest.raises(SlideError, match="unreadable region"):
            wsi.read_region(5 * 256, 0, 0, 64, 64)
        good = wsi.read_region(0, 1024, 0, 64, 64)  # openslide errors are sticky; the reader reopened
        assert good.shape == (64, 64, 3)


@pytest.mark.parametrize("values", [1, 255])
def test_mask_01_and_0255_give_the_same_tissue(tmp_path: Path, slide_files, values: int) -> None:
    wsi_path, _, truth = slide_files
    expected = truth[MASK_SCALE // 2::MASK_SCALE, MASK_SCALE // 2::MASK_SCALE]
    scaled = tmp_path / f"mask_{values}.tif"
    write_mask(scaled, expected.astype(np.uint8) * values, 4.0)
    with open_slide(wsi_path) as wsi:
        mask = read_tissue_mask(scaled, wsi)
        assert mask.scale == pytest.approx((MASK_SCALE, MASK_SCALE))
        assert mask.source == "mask"
        assert np.array_equal(mask.tissue, expected)


def test_mask_is_read_below_the_pixel_cap(slide_files) -> None:
    wsi_path, mask_path, _ = slide_files
    with open_slide(wsi_path) as wsi:
        small = read_tissue_mask(mask_path, wsi, max_pixels=20_000)
        assert small.tissue.size <= 20_000
        assert small.scale[0] > MASK_SCALE
        assert 0.2 < small.fraction < 0.5


def test_mask_with_wrong_aspect_ratio_is_rejected(tmp_path: Path, slide_files) -> None:
    wsi_path, _, _ = slide_files
    wrong = write_mask(tmp_path / "wrong.tif", np.ones((256, 128), np.uint8), 4.0)  # slide is 4:3, mask 1:2
    with open_slide(wsi_path) as wsi, pytest.raises(SlideError, match="does not match slide"):
        read_tissue_mask(wrong, wsi)


def test_threshold_estimate_finds_the_tissue(slide_files) -> None:
    wsi_path, _, truth = slide_files
    with open_slide(wsi_path) as wsi:
        estimate = estimate_tissue_mask(wsi, max_side=1024)
    step = round(estimate.scale[0])
    reference = truth[step // 2::step, step // 2::step][: estimate.tissue.shape[0], : estimate.tissue.shape[1]]
    iou = (estimate.tissue & reference).sum() / (estimate.tissue | reference).sum()
    assert estimate.source == "threshold"
    assert iou > 0.9
