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


def test_a_missing_tile_codec_falls_back_instead_of_skipping_patches(setup, monkeypatch) -> None:
    """Without imagecodecs tifffile cannot decode JPEG tiles (seen on a machine without it: every full-size patch
    was skipped as 'corrupt'); the pages then go to pyvips, and every patch is read, with pyvips's pixels."""
    from chimera_surv.readers import tiles as tiles_module

    _, wsi_path, grids = setup
    monkeypatch.setattr(tiles_module, "_decodable", lambda compression: False)
    blocks = plan_blocks([SlideGrid(0, wsi_path, (0.25, 0.25), grids[0.25])])
    reader, vips = RegionReader(), RegionReader("pyvips")
    indices, patches, skipped = read_block(reader, blocks[0])
    assert reader._tiles.pages == {} and skipped == [] and len(indices) == len(blocks[0].members)
    assert np.array_equal(patches, read_block(vips, blocks[0])[1])
    reader.close(), vips.close()


def test_batches_are_full_except_at_the_end_of_a_slide(setup) -> None:
    """Blocks are re-batched without copies; boundaries do not depend on block sizes, only on each slide's order."""
    _, wsi_path, grids = setup
    items = [SlideGrid(0, wsi_path, (0.25, 0.25), grids[0.25]),
             SlideGrid(1, wsi_path, (0.25, 0.25), grids[0.5], start=len(grids[0.25]))]
    sizes = [len(idx) for idx, _ in PatchBatches(plan_blocks(items), batch_size=24)]
    expected = [24] * (len(grids[0.25]) // 24) + ([len(grids[0.25]) % 24] if len(grids[0.25]) % 24 else [])
    expected += [24] * (len(grids[0.5]) // 24) + ([len(grids[0.5]) % 24] if len(grids[0.5]) % 24 else [])
    assert sizes == expected


def _level0_grid(wsi_path: Path, mask_path: Path, factor: int):
    """0.25·factor µm/px patches of 224 px read as (224·factor)-px squares at level 0 and reduced (a x4 pyramid
    has no 0.5 µm level: the realistic CHIMERA case)."""
    with open_slide(wsi_path) as wsi:
        cells = tissue_grid(wsi, read_tissue_mask(mask_path, wsi), target_mpp=0.25, patch_size=224 * factor)
    return type(cells)(cells.coords, cells.cells, cells.tissue, 0, 224 * factor, 224, 0.25 * factor, 0.25)


def _read_all(blocks, backend: str = "tiles") -> tuple[np.ndarray, np.ndarray]:
    reader = RegionReader(backend)
    parts = [read_block(reader, block) for block in blocks]
    reader.close()
    assert all(skipped == [] for _, _, skipped in parts)
    order = np.argsort(np.concatenate([idx for idx, _, _ in parts]))
    return np.concatenate([idx for idx, _, _ in parts])[order], np.concatenate([p for _, p, _ in parts])[order]


@pytest.fixture(scope="module")
def level0(setup):
    directory, wsi_path, _ = setup
    return wsi_path, {f: _level0_grid(wsi_path, directory / "slide_mask.tif", f) for f in (2, 4)}


def test_box_filtered_reduction_equals_openslide_per_patch(level0) -> None:
    """scaled_decode off: the tile reader's 2x reduction is openslide's pixels + the 2x2 box filter, exactly."""
    wsi_path, grids = level0
    grid = grids[2]
    blocks = plan_blocks([SlideGrid(0, wsi_path, (0.25, 0.25), grid)], scaled_decode=False)
    assert {b.decode_scale for b in blocks} == {1}
    _, patches = _read_all(blocks)
    for index in range(0, len(grid), max(1, len(grid) // 6)):
        assert np.array_equal(patches[index], _naive(wsi_path, grid, index)), index


@pytest.mark.parametrize("factor", [2, 4])
def test_scaled_decode_is_close_to_the_box_filter_and_deterministic(level0, factor: int) -> None:
    wsi_path, grids = level0
    grid = grids[factor]
    item = SlideGrid(0, wsi_path, (0.25, 0.25), grid)
    scaled_blocks = plan_blocks([item])
    assert len(grid) >= 8 and {b.decode_scale for b in scaled_blocks} == {factor}
    idx, scaled = _read_all(scaled_blocks)
    _, box = _read_all(plan_blocks([item], scaled_decode=False))
    assert np.array_equal(idx, np.arange(len(grid))) and scaled.shape == box.shape == (len(grid), 224, 224, 3)
    diff = np.abs(scaled.astype(np.int16) - box.astype(np.int16))
    assert 0 < diff.mean() < 2.0, diff.mean()  # really another decode, and close to the box filter
    assert np.percentile(diff, 99) <= 12
    # deterministic: a fresh reader, and patch-by-patch reads, give the same bytes
    assert np.array_equal(_read_all(scaled_blocks)[1], scaled)
    reader = RegionReader()
    block = scaled_blocks[len(scaled_blocks) // 2]
    single = np.concatenate([reader.read_patches(block, [k]) for k in range(len(block.members))])
    reader.close()
    assert np.array_equal(single, scaled[list(block.members)])
    # backends without the DCT path box-filter: identical to scaled_decode off
    assert np.array_equal(_read_all(scaled_blocks[:2], "pyvips")[1], box[:len(_read_all(scaled_blocks[:2])[0])])


def test_scaled_decode_with_workers_is_identical(level0) -> None:
    wsi_path, grids = level0
    blocks = plan_blocks([SlideGrid(0, wsi_path, (0.25, 0.25), grids[2])])

    def collect(workers: int) -> np.ndarray:
        batches = PatchBatches(blocks, batch_size=16, num_workers=workers)
        return np.concatenate([pix.numpy() for _, pix in batches])

    assert np.array_equal(collect(0), collect(2))


def test_corrupt_tile_in_the_scaled_path_skips_only_its_patches(setup, level0) -> None:
    directory, _, _ = setup
    wsi_path, grids = level0
    bad = directory / "bad_scaled.tif"
    if not bad.exists():
        corrupt_tile(wsi_path, bad, tile_index=5 * 16 + 7)  # level 0, tile row 5, column 7 (x 1792, y 1280)
    grid = grids[2]
    _, clean = _read_all(plan_blocks([SlideGrid(0, wsi_path, (0.25, 0.25), grid)]))
    batches = PatchBatches(plan_blocks([SlideGrid(0, bad, (0.25, 0.25), grid)]), batch_size=64)
    parts = list(batches)
    read = np.concatenate([idx.numpy() for idx, _ in parts])
    on_tile = [i for i, (x, y) in enumerate(grid.coords) if x < 2048 and x + 448 > 1792 and y < 1536 and y + 448 > 1280]
    assert sorted(batches.skipped) == on_tile and len(on_tile) > 0
    assert sorted(read.tolist() + on_tile) == list(range(len(grid)))
    assert np.array_equal(np.concatenate([pix.permute(0, 2, 3, 1).numpy() for _, pix in parts]), clean[read])


def test_only_ycbcr_jpeg_pages_decode_scaled(tmp_path: Path) -> None:
    """An RGB-photometric JPEG page has no colour-space marker libjpeg would trust: no DCT path there."""
    import tifffile

    from chimera_surv.readers.tiles import TiledTiff

    rgb = np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8)
    path = tmp_path / "rgbjpeg.tif"
    tifffile.imwrite(path, rgb, tile=(256, 256), compression="jpeg", photometric="rgb",
                     compressionargs={"outcolorspace": "rgb"})
    page = TiledTiff(path, [(512, 512)]).pages[0]
    ycbcr = tmp_path / "ycbcr.tif"
    tifffile.imwrite(ycbcr, rgb, tile=(256, 256), compression="jpeg", photometric="rgb")  # stored as YCbCr
    assert TiledTiff(ycbcr, [(512, 512)]).pages[0].can_scale(2)
    assert page.can_scale(1) and not page.can_scale(2)
    with pytest.raises(ValueError, match="cannot decode"):
        page.read_cells(0, 0, np.zeros((1, 2), np.int64), 256, 2)
    full = page.read_cells(0, 0, np.array([[1, 1]]), 256)
    assert full.shape == (1, 256, 256, 3) and np.abs(full[0].astype(int) - rgb[256:, 256:]).mean() < 4


def test_direct_and_public_scaled_decoders_agree_and_reject_bad_tiles(setup) -> None:
    """The fast path drives Pillow's decoder directly; it must give Image.open+draft's bytes and its errors."""
    import tifffile

    from chimera_surv.readers.slide import SlideError
    from chimera_surv.readers.tiles import _decode_direct, _decode_public, decode_jpeg_scaled

    _, wsi_path, _ = setup
    with tifffile.TiffFile(wsi_path) as tif:
        page = tif.pages[0]
        head = page.jpegtables[:-2]
        streams = []
        for index in (0, 2 * 16 + 7, 5 * 16 + 8):  # glass and tissue
            tif.filehandle.seek(page.dataoffsets[index])
            streams.append(head + tif.filehandle.read(page.databytecounts[index])[2:])
    for stream in streams:
        for scale in (2, 4, 8):
            fast = _decode_direct(stream, scale, (256, 256))
            assert fast.shape == (256 // scale, 256 // scale, 3)
            assert np.array_equal(fast, _decode_public(stream, scale, (256, 256)))
    bad = [streams[1][:len(streams[1]) // 2], head + bytes(len(streams[1])), bytes(100)]
    for stream in bad:
        for decode in (_decode_direct, _decode_public, decode_jpeg_scaled):
            with pytest.raises(SlideError):
                decode(stream, 2, (256, 256))
    with pytest.raises(SlideError):  # a frame smaller than the tile size claimed
        _decode_direct(streams[1], 2, (512, 512))
