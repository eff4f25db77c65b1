"""Read the patches of a tissue grid fast: one region read per block of neighbouring patches, in worker processes.

Why: one `read_region` per patch decodes every TIFF tile under a patch again and pays the call overhead each time;
reading a block of neighbouring patches at once decodes each tile about once. The default backend is our own tile
decoder (`readers/tiles.py`), which writes tiles straight into the patches and can do exact 2x/4x/8x reductions in
the JPEG DCT domain; pyvips (2-4x faster than openslide's `read_region`, ecosystem.md §1c) serves the levels it
cannot read, and openslide any level pyvips cannot map to a TIFF page.

Batches are uint8 (B, 3, P, P) tensors with the global patch indices beside them, so the bag comes out in grid order
whatever the number of workers. Memory is bounded by (workers x prefetch x one block), never by the slide size.
A region that fails to decode (a truncated or corrupt tile) is re-read patch by patch; patches that still fail are
skipped and reported, and the rest of the slide goes on.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from chimera_surv.readers.slide import SlideError, open_slide
from chimera_surv.readers.tiles import DCT_SCALES
from chimera_surv.tiling import PatchGrid, progressive_order

log = logging.getLogger(__name__)

# A block is at most this many pixels wide at the read level (bounded memory, ~10 MB RGB per block).
BLOCK_PIXELS = 2048
BACKENDS = ("tiles", "pyvips", "openslide")


@dataclass(frozen=True)
class Block:
    """One region read: `members` are global patch indices, `offsets` their (x, y) inside the region (level px)."""

    slide: int
    path: str
    mpp: tuple[float, float]
    level: int
    x0: int  # level-0 px of the region's top-left
    y0: int
    lx: int  # the same corner in level px
    ly: int
    width: int
    height: int
    read_size: int
    patch_size: int
    members: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]
    decode_scale: int = 1  # >1: an exact read_size/patch_size reduction done in the JPEG DCT domain if possible


@dataclass
class SlideGrid:
    """A slide to read: its index in the case, file, spacing and the grid of patches to cut from it."""

    slide: int
    path: Path
    mpp: tuple[float, float]
    grid: PatchGrid
    start: int = 0  # global index of this slide's first patch
    tile: int = 256  # TIFF tile size at the grid's level: blocks are aligned to it when the sizes allow


def decode_scale(read_size: int, patch_size: int, scaled_decode: bool = True) -> int:
    """The DCT-domain reduction for a grid: read_size / patch_size when that is exactly 2, 4 or 8, else 1."""
    factor, rest = divmod(read_size, patch_size)
    return factor if scaled_decode and rest == 0 and factor in DCT_SCALES else 1


def plan_blocks(slides: list[SlideGrid], block_pixels: int = BLOCK_PIXELS,
                scaled_decode: bool = True) -> list[Block]:
    """Group each slide's patches into square blocks of cells; the plan does not depend on the worker count.

    `scaled_decode` lets exact 2x/4x/8x reductions be decoded at that scale in the DCT domain (see
    `readers/tiles.py`) instead of decoded in full and box-filtered; it changes pixels slightly.
    """
    blocks: list[Block] = []
    for item in slides:
        grid = item.grid
        if len(grid) == 0:
            continue
        scale = decode_scale(grid.read_size, grid.patch_size, scaled_decode)
        cells_per_block = _cells_per_block(grid.read_size, item.tile, block_pixels)
        key_col, key_row = grid.cells[:, 0] // cells_per_block, grid.cells[:, 1] // cells_per_block
        order = np.lexsort((grid.cells[:, 0], grid.cells[:, 1], key_col, key_row))
        keys = np.stack([key_row[order], key_col[order]], 1)
        boundaries = np.flatnonzero(np.any(np.diff(keys, axis=0) != 0, axis=1)) + 1
        for group in np.split(order, boundaries):
            cols, rows = grid.cells[group, 0], grid.cells[group, 1]
            c0, r0 = int(cols.min()), int(rows.min())
            c1, r1 = int(cols.max()) + 1, int(rows.max()) + 1
            # level-0 corner of cell (c0, r0): the grid's coordinates grow with the cell index
            x0, y0 = int(grid.coords[group, 0].min()), int(grid.coords[group, 1].min())
            blocks.append(Block(
                slide=item.slide, path=str(item.path), mpp=item.mpp, level=grid.level, x0=x0, y0=y0,
                lx=c0 * grid.read_size, ly=r0 * grid.read_size, width=(c1 - c0) * grid.read_size,
                height=(r1 - r0) * grid.read_size, read_size=grid.read_size, patch_size=grid.patch_size,
                members=tuple(int(item.start + g) for g in group),
                offsets=tuple(((int(c) - c0) * grid.read_size, (int(r) - r0) * grid.read_size)
                              for c, r in zip(cols, rows)), decode_scale=scale))
    return blocks


def progressive_blocks(blocks: list[Block], chunk_patches: int = 256) -> list[Block]:
    """The blocks in the progressive order: every prefix covers each slide's tissue evenly, and the slides of a
    case in proportion to their patch counts (so a deadline is shared between slides by size).

    Within a slide the blocks follow `tiling.progressive_order` of their corners. Slides are interleaved in runs
    of about `chunk_patches` patches (whole blocks, so batches stay full and never mix slides); the next run always
    comes from the slide with the smallest fraction done (ties: lowest slide index). Deterministic.
    """
    by_slide: dict[int, list[Block]] = {}
    for block in blocks:
        by_slide.setdefault(block.slide, []).append(block)
    runs: dict[int, list[list[Block]]] = {}
    totals: dict[int, int] = {}
    for slide, own in by_slide.items():
        corners = np.asarray([(b.lx // b.read_size, b.ly // b.read_size) for b in own], dtype=np.int64)
        ordered = [own[i] for i in progressive_order(corners)]
        # a small slide is split into at least ~8 runs, so that it is interleaved with the others too
        limit = min(chunk_patches, -(-sum(len(b.members) for b in own) // 8))
        chunks: list[list[Block]] = [[]]
        size = 0
        for block in ordered:
            if size >= limit:
                chunks.append([])
                size = 0
            chunks[-1].append(block)
            size += len(block.members)
        runs[slide] = chunks
        totals[slide] = max(1, sum(len(b.members) for b in own))
    done = dict.fromkeys(runs, 0)
    position = dict.fromkeys(runs, 0)
    out: list[Block] = []
    while True:
        open_slides = [s for s in runs if position[s] < len(runs[s])]
        if not open_slides:
            return out
        slide = min(open_slides, key=lambda s: (done[s] / totals[s], s))
        chunk = runs[slide][position[slide]]
        position[slide] += 1
        done[slide] += sum(len(b.members) for b in chunk)
        out.extend(chunk)


def _cells_per_block(read_size: int, tile: int, block_pixels: int) -> int:
    """Cells per block side: a whole number of tiles when lcm(cell, tile) is small (224 and 256 → 8 cells =
    7 tiles), so neighbouring blocks never decode the same tile; else as many cells as fit in `block_pixels`."""
    common = math.lcm(read_size, tile) if tile > 0 else 0
    if 0 < common <= 2 * block_pixels:
        return max(1, common // read_size) * max(1, block_pixels // common)
    return max(1, block_pixels // read_size)


class RegionReader:
    """One open slide at a time (per process), read through our tile decoder, pyvips pages or openslide.

    "tiles" (default) decodes the TIFF tiles directly (`readers/tiles.py`) and uses pyvips for the levels it
    cannot read; "pyvips" uses pyvips pages; either falls back to openslide for a level no page matches.
    """

    def __init__(self, backend: str = "tiles") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown patch backend {backend!r} (known: {BACKENDS})")
        self.backend = backend
        self._path: str | None = None
        self._wsi: Any = None
        self._tiles: Any = None
        self._pages: dict[int, Any] = {}

    def _open(self, block: Block) -> None:
        if self._path == block.path:
            return
        self.close()
        self._wsi = open_slide(block.path, assume_mpp=block.mpp[0])
        self._path = block.path
        self._pages = {}
        if self.backend == "tiles":
            from chimera_surv.readers.tiles import TiledTiff

            self._tiles = TiledTiff(Path(block.path), self._wsi.level_dimensions)
        if self.backend != "openslide" and (self._tiles is None or len(self._tiles.pages) < self._wsi.level_count):
            self._pages = _pyvips_pages(Path(block.path), self._wsi.level_dimensions)

    def read_patches(self, block: Block, which: list[int] | None = None) -> np.ndarray:
        """uint8 (k, P, P, 3): the block's patches (or those at positions `which`), resized to `patch_size`.

        The tile decoder writes tiles straight into the patches when no resize is needed or the reduction can be
        done in the DCT domain (`block.decode_scale`); otherwise one region is read and cut (box filter for
        integer factors, bilinear for others).
        """
        self._open(block)
        which = list(range(len(block.members))) if which is None else which
        size, psize = block.read_size, block.patch_size
        tiled = self._tiles.pages.get(block.level) if self._tiles is not None else None
        scale = 1 if size == psize else block.decode_scale
        if tiled is not None and size == psize * scale and tiled.can_scale(scale):
            cells = np.asarray([block.offsets[i] for i in which], dtype=np.int64).reshape(-1, 2) // size
            return tiled.read_cells(block.lx, block.ly, cells, size, scale)
        if len(which) == 1:  # one patch (the fallback after a failed block): read just that square
            dx, dy = block.offsets[which[0]]
            out = np.empty((1, psize, psize, 3), np.uint8)  # writable, like every other path (torch wants it)
            out[0] = resize_patch(self.read(block, dx, dy, size, size), psize)
            return out
        region = self.read(block, 0, 0, block.width, block.height)
        return _cut(region, block, which)

    def read(self, block: Block, x: int, y: int, width: int, height: int) -> np.ndarray:
        """RGB uint8 (height, width, 3) at `block.level`, (x, y) relative to the block's corner in level px."""
        self._open(block)
        tiled = self._tiles.pages.get(block.level) if self._tiles is not None else None
        if tiled is not None:
            return tiled.read(block.lx + x, block.ly + y, width, height)
        page = self._pages.get(block.level)
        if page is not None:
            try:
                return _fetch_pyvips(page, block.lx + x, block.ly + y, width, height)
            except SlideError:
                # libvips keeps a failed tile as black in its cache: reopen so later reads decode afresh
                self._pages = _pyvips_pages(Path(block.path), self._wsi.level_dimensions)
                raise
        downsample = self._wsi.level_downsamples[block.level]
        return self._wsi.read_region(block.x0 + round(x * downsample), block.y0 + round(y * downsample),
                                     block.level, width, height)

    def close(self) -> None:
        if self._wsi is not None:
            self._wsi.close()
        if self._tiles is not None:
            self._tiles.close()
        self._wsi, self._tiles, self._path, self._pages = None, None, None, {}


def _pyvips_pages(path: Path, level_dimensions: list[tuple[int, int]]) -> dict[int, Any]:
    """Map pyramid levels to pyvips TIFF pages with the same size; unmapped levels fall back to openslide."""
    import pyvips

    pages: dict[int, Any] = {}
    # No operation cache: a reopened image must not be the cached one whose failed tiles read back as black.
    pyvips.cache_set_max(0)
    try:
        first = pyvips.Image.new_from_file(str(path))
        count = int(first.get("n-pages")) if "n-pages" in first.get_fields() else 1
        for page in range(count):
            image = pyvips.Image.tiffload(str(path), page=page, access="random")
            for level, (width, height) in enumerate(level_dimensions):
                if level not in pages and (image.width, image.height) == (width, height):
                    pages[level] = pyvips.Region.new(image)
    except pyvips.Error as error:
        log.info("pyvips cannot map %s (%s); using openslide", path.name, str(error).strip().splitlines()[0])
    return pages


def _fetch_pyvips(region: Any, x: int, y: int, width: int, height: int) -> np.ndarray:
    import pyvips

    try:
        data = region.fetch(int(x), int(y), int(width), int(height))
    except pyvips.Error as error:
        raise SlideError(f"unreadable region at ({x}, {y}): {str(error).strip().splitlines()[-1]}") from error
    bands = len(data) // (width * height)
    pixels = np.frombuffer(data, dtype=np.uint8).reshape(height, width, bands)
    if bands == 4:
        pixels = pixels[..., :3]
    elif bands == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return pixels


def resize_patch(patch: np.ndarray, size: int) -> np.ndarray:
    """Exact integer factors use a box filter (PIL `reduce`); other factors bilinear with antialiasing."""
    if patch.shape[0] == size and patch.shape[1] == size:
        return patch
    image = Image.fromarray(np.ascontiguousarray(patch))
    if patch.shape[0] % size == 0 and patch.shape[1] == patch.shape[0]:
        return np.asarray(image.reduce(patch.shape[0] // size))
    return np.asarray(image.resize((size, size), Image.BILINEAR))


def _cut(region: np.ndarray, block: Block, which: list[int]) -> np.ndarray:
    """The patches at positions `which` as one array; an integer-factor reduction is done once on the region
    (identical to per patch)."""
    size, psize = block.read_size, block.patch_size
    out = np.empty((len(which), psize, psize, 3), np.uint8)
    if size != psize and size % psize == 0:
        factor = size // psize
        region = np.asarray(Image.fromarray(np.ascontiguousarray(region)).reduce(factor))
        size = psize
    else:
        factor = 1
    for k, i in enumerate(which):
        dx, dy = block.offsets[i][0] // factor, block.offsets[i][1] // factor
        out[k] = resize_patch(region[dy:dy + size, dx:dx + size], psize)
    return out


def read_block(reader: RegionReader, block: Block) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(indices, uint8 patches (k, P, P, 3), skipped indices): one block read, patch reads only after a failure."""
    psize = block.patch_size
    try:
        return np.asarray(block.members, dtype=np.int64), reader.read_patches(block), []
    except SlideError:
        pass
    patches: list[np.ndarray] = []
    kept: list[int] = []
    skipped: list[int] = []
    for position, index in enumerate(block.members):
        try:
            patches.append(reader.read_patches(block, [position])[0])
            kept.append(index)
        except SlideError:
            skipped.append(index)
    stacked = np.stack(patches) if patches else np.zeros((0, psize, psize, 3), np.uint8)
    return np.asarray(kept, dtype=np.int64), stacked, skipped


class BlockDataset(torch.utils.data.Dataset):
    """Map-style dataset of blocks; each worker process keeps its own `RegionReader` (one slide handle)."""

    def __init__(self, blocks: list[Block], backend: str = "tiles") -> None:
        self.blocks = blocks
        self.backend = backend
        self._reader: RegionReader | None = None

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._reader is None:
            self._reader = RegionReader(self.backend)
        indices, patches, skipped = read_block(self._reader, self.blocks[item])
        # (B, 3, P, P) as a view of the NHWC array: channels_last strides, no copy; the GPU wants NHWC anyway
        chw = torch.from_numpy(patches).permute(0, 3, 1, 2)
        return torch.from_numpy(indices), chw, torch.as_tensor(skipped, dtype=torch.int64)


def _worker_context() -> Any:
    """forkserver with this module preloaded: workers start from a clean process that already imported torch
    and the readers (fast), never from a fork of a parent that holds libvips/openslide threads."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["chimera_surv.patches"])
    return context


def _worker_init(_: int) -> None:
    """Readers are single-threaded per process; parallelism comes from the number of workers."""
    torch.set_num_threads(1)
    os.environ["VIPS_CONCURRENCY"] = "1"
    bound_malloc()


# glibc's mallopt parameter number for the mmap threshold (malloc.h)
_M_MMAP_THRESHOLD = -3


def bound_malloc(threshold: int = 1 << 20) -> bool:
    """Serve every allocation >= `threshold` bytes by mmap, so that a freed region goes back to the OS at once.

    Why: glibc raises its mmap threshold to the size of the largest freed buffer (up to 32 MiB), after which the
    multi-MB region and patch buffers come from the heap, which fragments: a worker's memory then grew by about
    one block per block read (93 -> 325 MB over 22 blocks, measured) instead of staying flat. A fixed threshold
    turns that off. Only done in worker processes, which we own. Returns False where glibc is not present.
    """
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(threshold)))


@dataclass
class PatchBatches:
    """Iterate uint8 batches (indices (B,), patches (B, 3, P, P)); `skipped` fills up as blocks fail."""

    blocks: list[Block]
    batch_size: int = 64
    num_workers: int = 0
    backend: str = "tiles"
    prefetch: int = 2  # blocks in flight per worker: memory is workers x prefetch x one block
    pin_memory: bool = False
    skipped: list[int] = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        dataset = BlockDataset(self.blocks, self.backend)
        loader_kwargs: dict[str, Any] = {}
        if self.num_workers > 0:
            # forkserver: a clean process per worker, never a fork of a parent holding libvips/openslide threads
            loader_kwargs = {"prefetch_factor": self.prefetch, "worker_init_fn": _worker_init,
                             "multiprocessing_context": _worker_context(), "persistent_workers": False}
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False, num_workers=self.num_workers,
                                             pin_memory=self.pin_memory, **loader_kwargs)
        # One carry (fewer than batch_size patches) per slide, flushed at that slide's last block: a slide's batches
        # are the same whether its blocks come in one run or interleaved with other slides' (progressive order),
        # and batches never mix slides, so a slide's features never depend on the other slides of the case.
        last = {block.slide: i for i, block in enumerate(self.blocks)}
        carries: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        for position, (block, (indices, patches, skipped)) in enumerate(zip(self.blocks, loader)):
            self.skipped.extend(int(s) for s in skipped)
            carry_idx, carry = carries.pop(block.slide, ([], []))
            count = sum(len(c) for c in carry_idx)
            start = 0
            if count and len(indices):  # complete the carried batch from the head of this block
                start = min(self.batch_size - count, len(indices))
                carry_idx.append(indices[:start])
                carry.append(patches[:start])
                count += start
                if count == self.batch_size:
                    yield torch.cat(carry_idx), torch.cat(carry)
                    carry_idx, carry, count = [], [], 0
            # whole batches are views of the block (no copy, nothing kept past the block); the tail is carried
            while len(indices) - start >= self.batch_size:
                yield indices[start:start + self.batch_size], patches[start:start + self.batch_size]
                start += self.batch_size
            if start < len(indices):
                carry_idx.append(indices[start:])
                carry.append(patches[start:])
                count += len(indices) - start
            if count and position == last[block.slide]:
                yield torch.cat(carry_idx), torch.cat(carry)
            elif count:
                carries[block.slide] = (carry_idx, carry)
