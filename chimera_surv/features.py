"""Slides → one feature bag per case, cached on disk by the extraction recipe.

Why: every learned slide model consumes bags of patch features, and extraction is where the platform time goes.
The recipe (encoder, spacing, patch size, tissue threshold, cap, code version) names a cache entry, so training
resumes without recomputing and a changed recipe never reuses stale features. Bad slides never fail a case:
they are skipped with an issue and the bag holds whatever could be read (possibly nothing, N = 0).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chimera_surv.case import SlideInput
from chimera_surv.deadline import Deadline
from chimera_surv.device import maybe_compile
from chimera_surv.encode import encode_grids
from chimera_surv.encoders import get_spec, load_encoder
from chimera_surv.patches import SlideGrid
from chimera_surv.readers.slide import (
    DEFAULT_ASSUMED_MPP,
    WSI,
    SlideError,
    TissueMask,
    estimate_tissue_mask,
    open_slide,
    read_tissue_mask,
)
from chimera_surv.stain import STAIN_NORMS, PatchStain, fit_slide_stain
from chimera_surv.tiling import (
    DEFAULT_TIME_BUDGET_S,
    PatchGrid,
    patch_budget,
    split_budget,
    stratified_cap,
    tissue_grid,
)

log = logging.getLogger(__name__)

# Bump when a change alters the features produced for the same recipe (tiling, reading, resizing, pooling).
# "2": patches are cut by the tile decoder without a region buffer, and `scaled_decode` exists.
# "3": blocks are encoded in the progressive order (batches are composed differently).
FEATURES_CODE_VERSION = "3"


@dataclass(frozen=True)
class FeatureRecipe:
    """Everything that determines a bag. `max_patches`/`time_budget_s` cap the case deterministically.

    `throughput` (patches/s) turns the time budget into a patch budget; None uses the encoder's T4 reference.
    `num_workers`/`batch_size` do not change the features and are left out of the cache key.
    `weights="seeded"` is only accepted for the seeded test encoder.
    `scaled_decode`: exact 2x/4x/8x reductions (0.5 µm/px from 0.25 µm/px) are decoded at that scale in the JPEG
    DCT domain by the `tiles` backend (about 2-3x faster than decode + box filter; mean |diff| < 2 grey levels).
    Other backends box-filter, so with it on the backend becomes part of the cache key.
    """

    encoder: str = "uni"
    target_mpp: float = 0.5
    patch_size: int = 224
    min_tissue: float = 0.1
    max_patches: int | None = None
    time_budget_s: float | None = DEFAULT_TIME_BUDGET_S
    throughput: float | None = None
    batch_size: int = 64
    num_workers: int = 0
    backend: str = "tiles"
    weights: str = "file"
    mask_fallback: str = "threshold"  # when the mask is missing/misaligned: "threshold" tissue estimate or "skip"
    scaled_decode: bool = True
    # stain (chimera_surv/stain.py): per-slide normalisation ("none" | "macenko", fitted on the slide itself) and
    # HED jitter sigma and blur/JPEG quality-jitter strength (0-1) for training extraction (export drops both: the
    # container never jitters)
    stain_norm: str = "none"
    stain_jitter: float = 0.0
    quality_jitter: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureRecipe:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown FeatureRecipe fields: {unknown}")
        # a recipe stored before `scaled_decode` existed was extracted with the box filter: keep reproducing it
        return cls(**{"scaled_decode": False, **data})

    def cache_fields(self) -> dict[str, Any]:
        """The fields that change the features (not speed knobs), plus the code version."""
        data = self.to_dict()
        for speed_only in ("batch_size", "num_workers"):
            data.pop(speed_only)
        if not self.scaled_decode:  # every backend then gives the same pixels
            data.pop("backend")
        for stain_field, off in (("stain_norm", "none"), ("stain_jitter", 0.0), ("quality_jitter", 0.0)):
            # keys of older recipes unchanged
            if data[stain_field] == off:
                data.pop(stain_field)
        data["code_version"] = FEATURES_CODE_VERSION
        return data

    def key(self) -> str:
        """A short, stable cache key: readable encoder/spacing prefix + hash of every feature-changing field."""
        digest = hashlib.sha256(json.dumps(self.cache_fields(), sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.encoder}-{self.target_mpp:g}mpp-{self.patch_size}px-{digest}"

    def patch_budget(self) -> int | None:
        rate = self.throughput if self.throughput is not None else get_spec(self.encoder).t4_patches_per_s
        return patch_budget(self.time_budget_s, rate, self.max_patches)


@dataclass
class Bag:
    """features float32 (N, D), coords int64 (N, 3) = (slide index, x0, y0) in level-0 px, string metadata."""

    features: np.ndarray
    coords: np.ndarray
    meta: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.features.shape[0])


def _file_identity(path: Path | None) -> str:
    """Size + hash of the first and last MiB: identifies a multi-GB slide without reading it all."""
    if path is None:
        return "none"
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        if size > 2 << 20:
            handle.seek(-(1 << 20), 2)
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


@dataclass
class _Prepared:
    slide: SlideInput
    grid: PatchGrid
    mpp: tuple[float, float]
    mask_source: str
    tile: int = 256
    stain: PatchStain | None = None


def _prepare_slide(slide: SlideInput, recipe: FeatureRecipe, issues: list[str]) -> _Prepared | None:
    """Open the slide, get its tissue map (with the documented fallbacks) and build the uncapped grid."""
    label = f"slide {slide.index}" + (f" ({slide.name})" if slide.name else "")
    if slide.wsi is None:
        issues.append(f"{label}: no WSI file; skipped")
        return None
    try:
        wsi = open_slide(slide.wsi)
    except SlideError as error:
        if "no usable resolution" not in str(error):
            issues.append(f"{label}: {error}; skipped")
            return None
        wsi = open_slide(slide.wsi, assume_mpp=DEFAULT_ASSUMED_MPP)
        issues.append(f"{label}: no resolution in the file; assumed {DEFAULT_ASSUMED_MPP} µm/px")
    with wsi:
        mask: TissueMask | None = None
        if slide.mask is not None:
            try:
                mask = read_tissue_mask(slide.mask, wsi)
            except SlideError as error:
                issues.append(f"{label}: {error}")
        else:
            issues.append(f"{label}: no tissue mask")
        if mask is None:
            if recipe.mask_fallback != "threshold":
                issues.append(f"{label}: skipped (mask_fallback={recipe.mask_fallback!r})")
                return None
            try:
                mask = estimate_tissue_mask(wsi)
            except SlideError as error:
                issues.append(f"{label}: {error}; skipped")
                return None
            issues.append(f"{label}: using a saturation-threshold tissue estimate instead of the mask")
        grid = tissue_grid(wsi, mask, recipe.target_mpp, recipe.patch_size, recipe.min_tissue)
        if len(grid) == 0:
            issues.append(f"{label}: no tissue patches (mask tissue fraction {mask.fraction:.3f})")
        stain = _slide_stain(wsi, mask, recipe, label, issues) if len(grid) else None
        return _Prepared(slide, grid, wsi.mpp, mask.source, wsi.tile_size(grid.level), stain)


def _slide_stain(wsi: WSI, mask: TissueMask, recipe: FeatureRecipe, label: str, issues: list[str]
                 ) -> PatchStain | None:
    """The slide's stain transform (stain.py): its own Macenko estimate and/or the training jitter."""
    if recipe.stain_norm not in STAIN_NORMS:
        raise ValueError(f"stain_norm must be one of {STAIN_NORMS}, got {recipe.stain_norm!r}")
    fitted = None
    if recipe.stain_norm == "macenko":
        try:
            fitted = fit_slide_stain(wsi, mask.tissue)
        except (ValueError, SlideError, np.linalg.LinAlgError) as error:
            issues.append(f"{label}: stain normalisation skipped ({error})")
    if fitted is None and recipe.stain_jitter <= 0 and recipe.quality_jitter <= 0:
        return None
    return PatchStain(fitted, recipe.stain_jitter, quality=recipe.quality_jitter)


def _slide_cache_path(cache_dir: Path, recipe: FeatureRecipe, prepared: _Prepared, cap: int | None) -> Path:
    identity = hashlib.sha256(json.dumps([_file_identity(prepared.slide.wsi), _file_identity(prepared.slide.mask),
                                          prepared.mask_source, cap]).encode()).hexdigest()[:20]
    return cache_dir / recipe.key() / f"{identity}.safetensors"


def _load_cached(path: Path) -> tuple[np.ndarray, np.ndarray, int] | None:
    from safetensors.numpy import load_file

    if not path.is_file():
        return None
    try:
        data = load_file(str(path))
        if not np.isfinite(data["features"]).all():  # written before the non-finite guard (encode._finite_rows)
            log.warning("ignoring cache %s: it holds non-finite features", path)
            return None
        return data["features"], data["coords"], int(data["skipped"][0])
    except Exception as error:  # noqa: BLE001 - a broken cache file is recomputed, never trusted
        log.warning("ignoring unreadable cache %s: %s", path, error)
        return None


def _save_cached(path: Path, features: np.ndarray, coords: np.ndarray, skipped: int, meta: dict[str, str]) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"features": np.ascontiguousarray(features), "coords": np.ascontiguousarray(coords),
               "skipped": np.asarray([skipped], dtype=np.int64)}, str(tmp), metadata=meta)
    tmp.replace(path)


def extract_case_bag(slides: list[SlideInput], recipe: FeatureRecipe, encoder_root: Path | None,
                     cache_dir: Path | None = None, device: str | None = None,
                     encoder: torch.nn.Module | None = None, deadline: Deadline | None = None
                     ) -> tuple[Bag, list[str]]:
    """Encode every tissue patch of a case's slides (capped by the recipe's budget) into one bag.

    Raises only for a broken encoder (`MissingWeights`, `WeightMismatch`); bad slides become issues. `encoder`
    may pass an already-loaded encoder (e.g. across cases in training). `deadline` (None: no limit; inference
    passes `CaseClock.slides()`) stops encoding early; the bag is then the progressive prefix reached, a slide cut
    short is not cached, and an issue says how many patches each slide kept.
    """
    started = time.perf_counter()
    issues: list[str] = []
    dim = get_spec(recipe.encoder).dim
    prepared, any_cut = [], False
    for slide in slides:  # opening a slide and estimating its tissue take time too: none starts past the deadline
        if deadline is not None and deadline.remaining() <= 0:
            issues.append(f"slide {slide.index}: deadline reached before it was opened; skipped")
            any_cut = True
            continue
        prepared_slide = _prepare_slide(slide, recipe, issues)
        if prepared_slide is not None:
            prepared.append(prepared_slide)
    caps = split_budget([len(p.grid) for p in prepared], recipe.patch_budget())
    for p, cap in zip(prepared, caps):
        if cap is not None:
            issues.append(f"slide {p.slide.index}: capped from {len(p.grid)} to {cap} patches by the time budget")
            p.grid = stratified_cap(p.grid, cap)

    parts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    pending: list[tuple[_Prepared, int | None, Path | None]] = []
    for p, cap in zip(prepared, caps):
        path = _slide_cache_path(cache_dir, recipe, p, cap) if cache_dir is not None else None
        cached = _load_cached(path) if path is not None else None
        if cached is not None:
            feats, coords, skipped = cached
            parts[p.slide.index] = (feats, coords)
            if skipped:
                issues.append(f"slide {p.slide.index}: {skipped} unreadable patches skipped (cached)")
        else:
            pending.append((p, cap, path))

    if any(len(p.grid) for p, _, _ in pending):
        if encoder is None:
            encoder = load_encoder(recipe.encoder, encoder_root, device, weights=recipe.weights)
            if hasattr(encoder, "trunk"):  # CHIMERA_COMPILE=1 on CUDA (docs/features.md); a no-op otherwise
                encoder.trunk = maybe_compile(encoder.trunk, encoder.mean.device)
        items, start = [], 0
        for p, _, _ in pending:
            items.append(SlideGrid(p.slide.index, p.slide.wsi, p.mpp, p.grid, start, p.tile))
            start += len(p.grid)
        stains = {p.slide.index: p.stain for p, _, _ in pending if p.stain is not None}
        features_all, skipped, encoded, dropped = encode_grids(items, encoder, recipe, deadline, stains)
        for item, (p, cap, path) in zip(items, pending):
            span = np.arange(item.start, item.start + len(item.grid))
            ok = encoded[item.start:item.start + len(item.grid)]
            nonfinite_at = np.isin(span, dropped)
            reached = ok | np.isin(span, skipped) | nonfinite_at
            # a view when nothing was skipped: the bag is copied once, at the end, not once per step
            feats = (features_all[item.start:item.start + len(item.grid)] if ok.all()
                     else features_all[span[ok]])
            coords = np.concatenate([np.full((int(ok.sum()), 1), p.slide.index, np.int64),
                                     p.grid.coords[ok].astype(np.int64)], axis=1)
            lost = int(np.isin(span, skipped).sum())
            cut = not reached.all()
            any_cut = any_cut or cut
            if cut:
                issues.append(f"slide {p.slide.index}: deadline reached; kept {int(ok.sum())} of {len(p.grid)} "
                              "patches (an evenly spread prefix)")
            if lost:
                issues.append(f"slide {p.slide.index}: {lost} unreadable patches skipped (corrupt or truncated tiles)")
            nonfinite = int(nonfinite_at.sum())
            if nonfinite:
                issues.append(f"slide {p.slide.index}: {nonfinite} patches dropped: the encoder gave non-finite "
                              "features for them, also in fp32")
            parts[p.slide.index] = (feats, coords)
            if path is not None and not cut and not nonfinite:  # a cached slide reloads with `lost` as its cause
                _save_cached(path, feats, coords, lost, {"recipe": json.dumps(recipe.cache_fields(), sort_keys=True),
                                                         "level": str(p.grid.level)})
    else:
        for p, cap, path in pending:  # nothing to encode: empty parts, still cached
            parts[p.slide.index] = (np.zeros((0, dim), np.float32), np.zeros((0, 3), np.int64))

    ordered = [parts[k] for k in sorted(parts)]
    if len(ordered) == 1:  # one slide: its part is the bag (no second copy of a multi-GB array)
        features, coords = ordered[0]
    else:
        features = np.concatenate([f for f, _ in ordered]) if ordered else np.zeros((0, dim), np.float32)
        coords = np.concatenate([c for _, c in ordered]) if ordered else np.zeros((0, 3), np.int64)
    meta = {"recipe": json.dumps(recipe.to_dict(), sort_keys=True), "recipe_key": recipe.key(),
            "encoder": recipe.encoder, "slides": str(len(slides)), "slides_used": str(len(prepared)),
            "seconds": f"{time.perf_counter() - started:.2f}", "stopped": "deadline" if any_cut else "complete"}
    return Bag(features.astype(np.float32, copy=False), coords.astype(np.int64, copy=False), meta), issues
