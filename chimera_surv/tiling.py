"""The grid of patches to encode: tissue cells at a target spacing, and a deterministic cap that fits a time budget.

Why: feature extraction time is linear in the patch count and the platform job has a hard time limit, so the grid
(i) reads from the pyramid level closest to, but not coarser than, the target spacing (then resizes), (ii) keeps only
cells with enough tissue, and (iii) when there are more cells than the budget allows, keeps an evenly spread subset
along a space-filling curve, so the kept patches cover the whole tissue rather than its top-left corner.
Coordinates are level-0 pixels, the convention of CLAM/Trident feature files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from chimera_surv.readers.slide import WSI, TissueMask

# Default per-case budget for slide features: a 20-minute job on a T4-class GPU (the platform default) leaves
# ~10 minutes for slides once the container start, model loading, MRI and the fallbacks are accounted for.
DEFAULT_TIME_BUDGET_S = 600.0


@dataclass
class PatchGrid:
    """Patches of one slide: level-0 top-left corners plus how to read them.

    Each patch is a `read_size`-px square at pyramid `level`, resized to `patch_size` px. `cells` are the (column,
    row) indices in the level grid, used to group neighbouring patches into one region read.
    """

    coords: np.ndarray  # int64 (N, 2) level-0 x0, y0
    cells: np.ndarray  # int64 (N, 2) column, row
    tissue: np.ndarray  # float32 (N,) tissue fraction
    level: int
    read_size: int
    patch_size: int
    target_mpp: float
    level_mpp: float

    def __len__(self) -> int:
        return int(self.coords.shape[0])

    def subset(self, keep: np.ndarray) -> PatchGrid:
        return PatchGrid(self.coords[keep], self.cells[keep], self.tissue[keep], self.level, self.read_size,
                         self.patch_size, self.target_mpp, self.level_mpp)


def _tissue_fractions(mask: TissueMask, x0: np.ndarray, y0: np.ndarray, size0: float) -> np.ndarray:
    """Mean mask value over each cell [x0, x0 + size0) in level-0 px, by an integral image of the mask.

    A cell smaller than a mask pixel takes the value of the mask pixel under its centre.
    """
    tissue = mask.tissue.astype(np.float64)
    height, width = tissue.shape
    integral = np.zeros((height + 1, width + 1))
    integral[1:, 1:] = tissue.cumsum(0).cumsum(1)
    sx, sy = mask.scale
    ax = np.clip(np.round(x0 / sx).astype(np.int64), 0, width - 1)
    ay = np.clip(np.round(y0 / sy).astype(np.int64), 0, height - 1)
    bx = np.clip(np.maximum(np.round((x0 + size0) / sx).astype(np.int64), ax + 1), 1, width)
    by = np.clip(np.maximum(np.round((y0 + size0) / sy).astype(np.int64), ay + 1), 1, height)
    total = integral[by, bx] - integral[ay, bx] - integral[by, ax] + integral[ay, ax]
    return (total / ((bx - ax) * (by - ay))).astype(np.float32)


def tissue_grid(wsi: WSI, mask: TissueMask, target_mpp: float = 0.5, patch_size: int = 224,
                min_tissue: float = 0.1) -> PatchGrid:
    """Every non-overlapping `patch_size` cell at `target_mpp` whose tissue fraction is ≥ `min_tissue`.

    Only whole cells inside the slide are used (no padding), so every patch is real scanned pixels.
    """
    level = wsi.best_level(target_mpp)
    level_mpp = wsi.level_mpp(level)
    ratio = target_mpp / level_mpp
    read_size = patch_size if abs(ratio - 1.0) <= 0.05 else round(patch_size * ratio)
    width, height = wsi.level_dimensions[level]
    columns, rows = width // read_size, height // read_size
    downsample = wsi.level_downsamples[level]
    col, row = np.meshgrid(np.arange(columns, dtype=np.int64), np.arange(rows, dtype=np.int64))
    col, row = col.ravel(), row.ravel()
    x0 = np.floor(col * read_size * downsample).astype(np.int64)
    y0 = np.floor(row * read_size * downsample).astype(np.int64)
    fractions = (_tissue_fractions(mask, x0, y0, read_size * downsample) if col.size
                 else np.zeros(0, np.float32))
    keep = fractions >= min_tissue if min_tissue > 0 else np.ones(col.size, bool)
    return PatchGrid(coords=np.stack([x0[keep], y0[keep]], 1).reshape(-1, 2),
                     cells=np.stack([col[keep], row[keep]], 1).reshape(-1, 2),
                     tissue=fractions[keep], level=level, read_size=read_size, patch_size=patch_size,
                     target_mpp=target_mpp, level_mpp=level_mpp)


def hilbert_index(cells: np.ndarray, order: int | None = None) -> np.ndarray:
    """Position of each (column, row) cell along a Hilbert curve: neighbours on the curve are neighbours in space."""
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
    if order is None:
        order = max(1, math.ceil(math.log2(max(2, int(cells.max(initial=1)) + 1))))
    side = 1 << order
    x, y = cells[:, 0].copy(), cells[:, 1].copy()
    index = np.zeros(len(cells), dtype=np.int64)
    s = side // 2
    while s > 0:
        rx = ((x & s) > 0).astype(np.int64)
        ry = ((y & s) > 0).astype(np.int64)
        index += s * s * ((3 * rx) ^ ry)
        # rotate the quadrant so the curve stays continuous
        flip = ry == 0
        swap_x = np.where(flip & (rx == 1), side - 1 - x, x)
        swap_y = np.where(flip & (rx == 1), side - 1 - y, y)
        x = np.where(flip, swap_y, swap_x)
        y = np.where(flip, swap_x, swap_y)
        s //= 2
    return index


def stratified_cap(grid: PatchGrid, max_patches: int | None) -> PatchGrid:
    """At most `max_patches` patches, evenly spaced along the Hilbert curve; deterministic, keeps grid order."""
    if max_patches is None or len(grid) <= max_patches:
        return grid
    if max_patches <= 0:
        return grid.subset(np.zeros(len(grid), dtype=bool))
    order = np.argsort(hilbert_index(grid.cells), kind="stable")
    picks = order[np.floor((np.arange(max_patches) + 0.5) * len(grid) / max_patches).astype(np.int64)]
    keep = np.zeros(len(grid), dtype=bool)
    keep[picks] = True
    return grid.subset(keep)


def patch_budget(time_budget_s: float | None, patches_per_s: float, max_patches: int | None = None) -> int | None:
    """How many patches fit the time budget at the given end-to-end throughput, and under `max_patches`."""
    limits = [m for m in (max_patches,) if m is not None]
    if time_budget_s is not None and patches_per_s > 0:
        limits.append(int(time_budget_s * patches_per_s))
    return min(limits) if limits else None


def split_budget(counts: list[int], budget: int | None) -> list[int | None]:
    """Share a case budget between slides in proportion to their patch counts (largest remainder, deterministic)."""
    total = sum(counts)
    if budget is None or total <= budget:
        return [None] * len(counts)
    exact = [budget * c / total for c in counts]
    shares = [math.floor(e) for e in exact]
    for i in sorted(range(len(counts)), key=lambda i: (-(exact[i] - shares[i]), i))[: budget - sum(shares)]:
        shares[i] += 1
    return shares


def progressive_order(cells: np.ndarray) -> np.ndarray:
    """A permutation of `cells` whose every prefix is spread evenly over them (deterministic).

    The cells are ranked along a Hilbert curve (neighbours on the curve are neighbours in space); the ranks are then
    visited in bit-reversed order (the van der Corput sequence): 0, n/2, n/4, 3n/4, ... so the first k cells are
    about n/k apart along the curve for every k, and a stop anywhere leaves a bag that covers the whole tissue.
    """
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
    n = len(cells)
    if n <= 1:
        return np.arange(n, dtype=np.int64)
    along = np.argsort(hilbert_index(cells), kind="stable")  # curve position -> cell
    bits = max(1, math.ceil(math.log2(n)))
    positions = np.arange(1 << bits, dtype=np.int64)
    reversed_bits = np.zeros_like(positions)
    for b in range(bits):
        reversed_bits |= ((positions >> b) & 1) << (bits - 1 - b)
    visit = reversed_bits[reversed_bits < n]
    return along[visit]
