"""Patch batches → features: the encoding loop of a case's slides, on the CPU or overlapped on CUDA.

Why its own module: `features.extract_case_bag` decides what to encode (slides, masks, caps, cache); this loop
decides how (progressive block order, pinned non-blocking copies, the deadline's cut, per-slide stain transforms,
and the re-encoding of rows that overflow half precision).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from chimera_surv.deadline import CPU_SLOWDOWN, PROBE_PATCHES, Deadline, ExtractionClock
from chimera_surv.patches import BLOCK_PIXELS, PatchBatches, SlideGrid, plan_blocks, progressive_blocks
from chimera_surv.stain import PatchStain
from chimera_surv.tiling import PatchGrid

log = logging.getLogger(__name__)


def _block_pixels(grid: PatchGrid, per_side: int = 8) -> int:
    """Block side (level px) for the progressive order: at most `BLOCK_PIXELS`, small enough that the tissue spans
    about `per_side` blocks per side, so that a prefix of blocks covers a small slide evenly too."""
    if len(grid) == 0:
        return BLOCK_PIXELS
    extent = int((np.ptp(grid.cells, axis=0).min() + 1) * grid.read_size)
    return int(min(BLOCK_PIXELS, max(2 * grid.read_size, extent // per_side)))


def _restain(patches: torch.Tensor, indices: torch.Tensor, starts: list[tuple[int, int, int]],
             stains: dict[int, PatchStain]) -> torch.Tensor:
    """Recolour a batch (one slide's patches: PatchBatches never mixes slides in a batch) with its slide's
    stain transform (stain.py: per-slide Macenko and/or HED jitter keyed by the patch index)."""
    lo, slide = next((lo, k) for lo, hi, k in starts if lo <= int(indices[0]) < hi)
    if slide not in stains:
        return patches
    nhwc = stains[slide](patches.permute(0, 2, 3, 1).numpy(), slide, indices.numpy() - lo)
    return torch.from_numpy(np.ascontiguousarray(nhwc)).permute(0, 3, 1, 2)


def encode_grids(items: list[SlideGrid], encoder: torch.nn.Module, recipe: Any,
                 deadline: Deadline | None = None,
                 stains: dict[int, PatchStain] | None = None
                 ) -> tuple[np.ndarray, list[int], np.ndarray, list[int]]:
    """Features (N_total, D) in global patch order, the skipped (unreadable) global indices, a bool mask of the
    encoded ones, and the indices dropped for non-finite features. `recipe` is the case's `features.FeatureRecipe`
    (its batch size, workers, backend and decode mode).

    Patches go in the progressive order (`patches.progressive_blocks`), so a deadline stop leaves an evenly spread
    prefix. On CUDA the loader pins batches, the copy is non-blocking, and the result of batch i is copied back
    (non-blocking, then waited on) only after batch i+1 has been queued, so decoding, copies and the encoder
    overlap. Batches are fixed by the block plan, never by timing, so a patch's features do not depend on where
    the run stops. `stains` (slide index → transform) recolours a slide's patches before encoding. Under a
    `deadline` a one-patch probe is timed first (and thrown away), and the clock may cut a batch to what fits in
    the time left (`deadline.ExtractionClock.take`); only such a cut piece can differ from a run without a
    deadline (by float rounding of a smaller batch). A patch whose features come out non-finite (a half-precision
    overflow) is encoded again in fp32 (`_finite_rows`); one still non-finite is dropped, never put in the bag.
    """
    total = sum(len(item.grid) for item in items)
    dim = encoder.spec.dim
    features = np.zeros((total, dim), dtype=np.float32)
    encoded = np.zeros(total, dtype=bool)
    device = encoder.mean.device
    cuda = device.type == "cuda"
    planned = [b for item in items
               for b in plan_blocks([item], block_pixels=_block_pixels(item.grid), scaled_decode=recipe.scaled_decode)]
    blocks = progressive_blocks(planned, chunk_patches=4 * recipe.batch_size)
    batches = PatchBatches(blocks, batch_size=recipe.batch_size, num_workers=recipe.num_workers,
                           backend=recipe.backend, pin_memory=cuda)
    prior = CPU_SLOWDOWN / max(float(getattr(encoder.spec, "t4_patches_per_s", 1.0)), 1e-3)
    clock = ExtractionClock(deadline, total, prior_patch_s=prior)
    starts = [(item.start, item.start + len(item.grid), item.slide) for item in items]
    pending: tuple[torch.Tensor, torch.Tensor, Any, torch.Tensor] | None = None
    dropped: list[int] = []

    def finish(job: tuple[torch.Tensor, torch.Tensor, Any, torch.Tensor]) -> None:
        indices, out, event, patches = job
        if event is not None:
            event.synchronize()
        index = indices.numpy()
        values, finite = _finite_rows(encoder, patches, out.numpy())
        features[index[finite]] = values[finite]
        encoded[index[finite]] = True
        dropped.extend(index[~finite].tolist())
        clock.batch_done(len(index))

    stop = not clock.can_start()
    for batch_indices, batch_patches in ([] if stop else batches):
        start = 0
        while start < len(batch_indices) and not stop:
            if clock.needs_probe():  # one patch, timed and thrown away: the first batch is sized by its cost
                if not clock.probe_fits():
                    stop = True
                    break
                probe_start = time.monotonic()
                probe = batch_patches[:PROBE_PATCHES]
                encoder.embed(_restain(probe, batch_indices[:PROBE_PATCHES], starts, stains) if stains else probe
                              ).to("cpu")
                clock.probe_done(len(probe), time.monotonic() - probe_start)
            count = clock.take(len(batch_indices) - start, new_batch=start == 0)
            stop = count == 0
            if stop:
                break
            indices, patches = batch_indices[start:start + count], batch_patches[start:start + count]
            start += count
            if stains:
                patches = _restain(patches, indices, starts, stains)
            out = encoder.embed(patches)
            event = None
            if cuda:
                out = out.to("cpu", non_blocking=True)
                event = torch.cuda.Event()
                event.record()
            if pending is not None:
                finish(pending)
            pending = (indices, out, event, patches)
            if not cuda:
                finish(pending)
                pending = None
        if stop:
            break
    if pending is not None:
        finish(pending)
    if deadline is not None:
        clock.log()
    return features, sorted(batches.skipped), encoded, sorted(dropped)


def _finite_rows(encoder: torch.nn.Module, patches: torch.Tensor, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, finite row mask): rows with a non-finite feature are encoded again without autocast.

    Half precision overflows at 65,504 (fp16, a T4's dtype); such a row is recomputed in fp32 and kept when it is
    finite there. The common case (all finite) costs one `isfinite` pass over the batch and nothing else.
    """
    finite = np.isfinite(values).all(axis=1)
    if finite.all():
        return values, finite
    rows = np.flatnonzero(~finite)
    again = encoder.embed(patches[torch.from_numpy(rows)], full_precision=True).to("cpu").numpy()
    values = values.copy()
    values[rows] = again
    log.info("%d patch(es) gave non-finite features in half precision; re-encoded in fp32 (%d finite there)",
             len(rows), int(np.isfinite(again).all(axis=1).sum()))
    return values, np.isfinite(values).all(axis=1)
