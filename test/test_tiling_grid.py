"""tissue_grid at a target spacing, the stratified cap, and the time budget."""

from __future__ import annotations

import numpy as np
import pytest
from test_slide_fixtures import make_slide

from chimera_surv.readers.slide import TissueMask, open_slide, read_tissue_mask
from chimera_surv.tiling import hilbert_index, patch_budget, split_budget, stratified_cap, tissue_grid


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory):
    wsi_path, mask_path, truth = make_slide(tmp_path_factory.mktemp("tiling"))
    wsi = open_slide(wsi_path)
    mask = read_tissue_mask(mask_path, wsi)
    yield wsi, mask, truth
    wsi.close()


def test_grid_at_half_micron_reads_level_1_without_resize(slide) -> None:
    wsi, mask, truth = slide
    grid = tissue_grid(wsi, mask, target_mpp=0.5, patch_size=224, min_tissue=0.1)
    assert grid.level == 1 and grid.read_size == 224 and grid.level_mpp == pytest.approx(0.5)
    assert grid.coords.dtype == np.int64
    assert np.all(grid.coords % 448 == 0)  # 224 px at 0.5 µm = 448 level-0 px
    assert np.all(grid.coords[:, 0] + 448 <= 4096) and np.all(grid.coords[:, 1] + 448 <= 3072)
    # tissue fractions agree with the full-resolution truth
    for (x0, y0), fraction in zip(grid.coords, grid.tissue):
        assert abs(truth[y0:y0 + 448, x0:x0 + 448].mean() - fraction) < 0.06
    # every cell whose truth tissue is ≥ 0.2 is in the grid (none lost)
    full = [(x, y) for y in range(0, 3072 - 447, 448) for x in range(0, 4096 - 447, 448)
            if truth[y:y + 448, x:x + 448].mean() >= 0.2]
    assert set(full) <= set(map(tuple, grid.coords.tolist()))


def test_grid_at_one_micron_and_a_spacing_between_levels(slide) -> None:
    wsi, mask, _ = slide
    coarse = tissue_grid(wsi, mask, target_mpp=1.0, patch_size=224)
    assert coarse.level == 2 and coarse.read_size == 224
    assert np.all(coarse.coords % 896 == 0)
    between = tissue_grid(wsi, mask, target_mpp=0.6, patch_size=224)
    assert between.level == 1  # closest level not coarser than 0.6
    assert between.read_size == round(224 * 0.6 / 0.5)


def test_min_tissue_and_empty_mask(slide) -> None:
    wsi, mask, _ = slide
    loose = tissue_grid(wsi, mask, min_tissue=0.1)
    strict = tissue_grid(wsi, mask, min_tissue=1.0)
    assert 0 < len(strict) < len(loose)
    assert np.all(strict.tissue >= 1.0)
    empty = TissueMask(np.zeros_like(mask.tissue), mask.scale, "mask")
    assert len(tissue_grid(wsi, empty)) == 0


def test_hilbert_index_is_a_continuous_bijection() -> None:
    cells = np.array([(x, y) for y in range(16) for x in range(16)])
    index = hilbert_index(cells)
    assert sorted(index.tolist()) == list(range(256))
    walk = cells[np.argsort(index)]
    assert np.abs(np.diff(walk, axis=0)).sum(1).max() == 1


def test_stratified_cap_is_deterministic_exact_and_spread(slide) -> None:
    wsi, mask, _ = slide
    grid = tissue_grid(wsi, mask, target_mpp=0.25, patch_size=112)  # a dense grid (~1000 cells)
    cap = len(grid) // 4
    first, second = stratified_cap(grid, cap), stratified_cap(grid, cap)
    assert len(first) == cap
    assert np.array_equal(first.coords, second.coords)
    assert set(map(tuple, first.coords.tolist())) <= set(map(tuple, grid.coords.tolist()))
    # each quadrant of the tissue keeps about a quarter of its patches
    cx, cy = np.median(grid.coords, axis=0)
    for sx in (np.less, np.greater_equal):
        for sy in (np.less, np.greater_equal):
            total = (sx(grid.coords[:, 0], cx) & sy(grid.coords[:, 1], cy)).sum()
            kept = (sx(first.coords[:, 0], cx) & sy(first.coords[:, 1], cy)).sum()
            assert abs(kept / total - 0.25) < 0.04
    assert stratified_cap(grid, None) is grid
    assert len(stratified_cap(grid, 0)) == 0


def test_budget_and_its_split_between_slides() -> None:
    assert patch_budget(600, 200.0) == 120_000
    assert patch_budget(600, 200.0, max_patches=3000) == 3000
    assert patch_budget(None, 200.0) is None
    shares = split_budget([1000, 3000, 0], 400)
    assert sum(shares) == 400 and shares == [100, 300, 0]
    assert split_budget([10, 20], 100) == [None, None]
    uneven = split_budget([1, 1, 1], 2)
    assert sum(uneven) == 2 and max(uneven) == 1
