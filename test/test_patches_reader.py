"""The block patch reader: same pixels as one read per patch, every patch once, workers, corrupt tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_slide_fixtures import corrupt_tile, make_slide

from chimera_surv.patches import PatchBatches, RegionReader, SlideGrid, plan_blocks, read_block, resize_patch
from chimera_surv.readers.slide import open_slide, read_tissue_mask
from chimera_surv.tiling import tissue_grid


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("patches")
    wsi_path, mask_path, _ = make_slide(directory)
    with open_slide(wsi_path) as wsi:
        mask = read_tissue_mask(mask_path, wsi)
        grids = {mpp: tissue_grid(wsi, mask, target_mpp=mpp, patch_size=224) for mpp in (0.25, 0.5, 0.6)}
    return directory, wsi_path, grids


def _naive(wsi_path: Path, grid, index: int) -> np.ndarray:
    """The reference: one openslide read_region per patch, then the same resize."""
    with open_slide(wsi_path) as wsi:
        x0, y0 = grid.coords[index]
        patch = wsi.read_region(int(x0), int(y0), grid.level, grid.read_size, grid.read_size)
    return resize_patch(patch, grid.patch_size)


@pytest.mark.parametrize("mpp", [0.25, 0.5, 0.6])
@pytest.mark.parametrize("backend", ["tiles", "pyvips", "openslide"])
def test_block_reads_equal_one_read_per_patch(setup, mpp: float, backend: str) -> None:
    _, wsi_path, grids = setup
    grid = grids[mpp]
    blocks = plan_blocks([SlideGrid(0, wsi_path, (0.25, 0.25), grid)])
    reader = RegionReader(backend)
    seen = {}
    for block in blocks[:3] + blocks[-2:]:
        indices, patches, skipped = read_block(reader, block)
        assert skipped == [] and patches.dtype == np.uint8 and patches.shape[1:] == (224, 224, 3)
        seen.update(zip(indices.tolist(), patches))
    reader.close()
    for index in list(seen)[:: max(1, len(seen) // 6)]:
        assert np.array_equal(seen[index], _naive(wsi_path, grid, index)), (backend, mpp, index)


def test_blocks_cover_every_patch_once_with_several_patches_per_read(setup) -> None:
    _, wsi_path, grids = setup
    grid = grids[0.25]
    blocks = plan_blocks([SlideGrid(0, wsi_path, (0.25, 0.25), grid, start=100)])
    members = [m for block in blocks for m in block.members]
    assert sorted(members) == list(range(100, 100 + len(grid)))
    assert len(blocks) < len(grid) / 4  # far fewer reads than patches
    assert max(b.width for b in blocks) <= 2048
    # 224-px cells and 256-px tiles: blocks are 8 cells = 7 tiles, so no tile belongs to two blocks
    assert all((b.lx // 1792) == ((b.lx + b.width - 1) // 1792) for b in blocks)
    assert all((b.ly // 1792) == ((b.ly + b.height - 1) // 1792) for b in blocks)


def test_batches_cover_the_grid_in_order(setup) -> None:
    """(Worker invariance of the bags is tested in test_features_bag.py.)"""
    _, wsi_path, grids = setup
    blocks = plan_blocks([SlideGrid(0, wsi_path, (0.25, 0.25), grids[0.5])])

    def collect(workers: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
        batches = PatchBatches(blocks, batch_size=16, num_workers=workers)
        indices, pixels = [], []
        for idx, pix in batches:
            assert pix.shape[0] <= 16 and tuple(pix.shape[1:]) == (3, 224, 224)
            assert str(pix.dtype) == "torch.uint8"
            indices.append(idx.numpy())
            pixels.append(pix.numpy())
        return np.concatenate(indices), np.concatenate(pixels), batches.skipped

    idx0, pix0, skipped0 = collect(0)
    assert sorted(idx0.tolist()) == list(range(len(grids[0.5])))
    assert skipped0 == []
    again = collect(0)
    assert np.array_equal(idx0, again[0]) and np.array_equal(pix0, again[1])


@pytest.mark.parametrize("backend", ["tiles", "pyvips", "openslide"])
def test_corrupt_tile_skips_only_the_patches_on_it(setup, backend: str) -> None:
    directory, wsi_path, grids = setup
    bad = directory / f"bad_{backend}.tif"
    if not bad.exists():
        corrupt_tile(wsi_path, bad, tile_index=2 * 16 + 7)  # level 0, tile row 2, column 7 (x 1792, y 512)
    grid = grids[0.25]  # level 0, 224-px patches
    batches = PatchBatches(plan_blocks([SlideGrid(0, bad, (0.25, 0.25), grid)]), batch_size=64, backend=backend)
    read = np.concatenate([idx.numpy() for idx, _ in batches])
    skipped = batches.skipped
    on_tile = [i for i, (x, y) in enumerate(grid.coords)
               if x < 2048 and x + 224 > 1792 and y < 768 and y + 224 > 512]
    assert sorted(skipped) == sorted(on_tile) and len(skipped) > 0
    assert sorted(read.tolist() + skipped) == list(range(len(grid)))


def test_integer_reduction_is_a_box_filter_and_other_factors_resize() -> None:
    patch = np.zeros((448, 448, 3), np.uint8)
    patch[::2, ::2] = 200  # one bright pixel in every 2x2 box
    reduced = resize_patch(patch, 224)
    assert reduced.shape == (224, 224, 3) and np.all(reduced == 50)
    assert resize_patch(patch[:269, :269], 224).shape == (224, 224, 3)
    assert resize_patch(patch[:224, :224], 224) is not None


def test_tile_decoder_serves_every_level_without_pyvips(setup) -> None:
    """The default backend really decodes the tiles itself (no silent fallback) and matches pyvips exactly."""
    _, wsi_path, grids = setup
    block = plan_blocks([SlideGrid(0, wsi_path, (0.25, 0.25), grids[0.25])])[0]
    tiles, vips = RegionReader(), RegionReader("pyvips")
    ours = tiles.read(block, 0, 0, block.width, block.height)
    assert len(tiles._tiles.pages) == tiles._wsi.level_count and tiles._pages == {}
    assert np.array_equal(ours, vips.read(block, 0, 0, block.width, block.height))
    tiles.close(), vips.close()


def test_batches_are_full_except_at_the_end_of_a_slide(setup) -> None:
    """Blocks are re-batched without copies; boundaries do not depend on block sizes, only on each slide's order."""
    _, wsi_path, grids = setup
    items = [SlideGrid(0, wsi_path, (0.25, 0.25), grids[0.25]),
             SlideGrid(1, wsi_path, (0.25, 0.25), grids[0.5], start=len(grids[0.25]))]
    sizes = [len(idx) for idx, _ in PatchBatches(plan_blocks(items), batch_size=24)]
    expected = [24] * (len(grids[0.25]) // 24) + ([len(grids[0.25]) % 24] if len(grids[0.25]) % 24 else [])
    expected += [24] * (len(grids[0.5]) // 24) + ([len(grids[0.5]) % 24] if len(grids[0.5]) % 24 else [])
    assert sizes == expected
