"""Whole-slide images and their tissue masks: physical spacing, pyramid levels, regions.

Why this module exists: every later step (tiling, patch reading, features) needs the slide's µm/px and a tissue
mask in slide coordinates, and the platform's files are generic pyramidal TIFFs whose spacing is stored in TIFF
resolution tags (cm or inch) that old openslide builds do not turn into `openslide.mpp-x` (ecosystem.md §1b).

Errors are `SlideError` with a readable message; a corrupt or truncated file fails fast, never hangs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np

from chimera_surv.limits import (
    ESTIMATE_MAX_SIDE,
    ESTIMATE_TILE,
    ESTIMATE_TIME_S,
    MAX_ESTIMATE_DECODE_PIXELS,
    MAX_MASK_DECODE_PIXELS,
    MAX_MASK_PIXELS,
)

log = logging.getLogger(__name__)

# A slide spacing outside this range is not a microscope spacing: pyvips writes 1 px/mm (1000 µm/px) when no
# resolution was given, and a TIFF without tags reports none at all. Both are treated as "no resolution".
PLAUSIBLE_MPP = (0.05, 20.0)
# The documented degraded path when a slide has no usable resolution: assume the CHIMERA scanners' level-0
# spacing (0.25 µm/px, chimera-spec.md §3.1) and say so in the issues.
DEFAULT_ASSUMED_MPP = 0.25


# A mask with fewer pixels than this on a side cannot locate tissue (and passes any aspect-ratio check).
MIN_MASK_SIDE = 8


class SlideError(RuntimeError):
    """A slide or mask that cannot be used as it is (unreadable, no resolution, misaligned mask ...)."""


def mpp_from_properties(props: Mapping[str, str]) -> tuple[float, float] | None:
    """µm/px from openslide properties: `openslide.mpp-x/y`, else the TIFF resolution tags (cm or inch).

    Returns None when neither gives a plausible microscope spacing.
    """
    candidates: list[tuple[float, float]] = []
    try:
        if "openslide.mpp-x" in props and "openslide.mpp-y" in props:
            candidates.append((float(props["openslide.mpp-x"]), float(props["openslide.mpp-y"])))
    except ValueError:
        pass
    unit = str(props.get("tiff.ResolutionUnit", "")).lower()
    factor = {"centimeter": 1e4, "cm": 1e4, "inch": 25400.0}.get(unit)
    try:
        if factor and "tiff.XResolution" in props and "tiff.YResolution" in props:
            xres, yres = float(props["tiff.XResolution"]), float(props["tiff.YResolution"])
            if xres > 0 and yres > 0:
                candidates.append((factor / xres, factor / yres))
    except ValueError:
        pass
    low, high = PLAUSIBLE_MPP
    for mx, my in candidates:
        if all(math.isfinite(v) and low <= v <= high for v in (mx, my)):
            return mx, my
    return None


def _open_openslide(path: Path) -> Any:
    import openslide

    if not path.is_file():
        raise SlideError(f"slide file not found: {path}")
    try:
        return openslide.OpenSlide(str(path))
    except openslide.OpenSlideUnsupportedFormatError as error:
        raise SlideError(f"unsupported, truncated or corrupt slide file {path.name}: {error}") from error
    except openslide.OpenSlideError as error:
        raise SlideError(f"cannot read slide {path.name}: {error}") from error


@dataclass
class WSI:
    """An open slide: level-0 spacing, pyramid geometry and an RGB `read_region`.

    `mpp_source` says where the spacing came from: "properties" (openslide/TIFF tags) or "assumed" (the degraded
    path, see `open_slide(assume_mpp=...)`).
    """

    path: Path
    mpp: tuple[float, float]
    mpp_source: str
    level_dimensions: list[tuple[int, int]]
    level_downsamples: list[float]
    _handle: Any = field(default=None, repr=False)

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    def level_mpp(self, level: int) -> float:
        """Mean µm/px of a level (x and y differ by < 1% on real scanners)."""
        return float(np.mean(self.mpp)) * self.level_downsamples[level]

    def best_level(self, target_mpp: float, tolerance: float = 0.05) -> int:
        """The coarsest level not coarser than `target_mpp` (within `tolerance`), i.e. the closest finer level."""
        best = 0
        for level in range(self.level_count):
            if self.level_mpp(level) <= target_mpp * (1.0 + tolerance):
                best = level
        return best

    def tile_size(self, level: int) -> int:
        """The TIFF tile width at `level` (0 when untiled or unknown)."""
        try:
            return int(self._handle.properties.get(f"openslide.level[{level}].tile-width", 0))
        except (ValueError, AttributeError):
            return 0

    def read_region(self, x0: int, y0: int, level: int, width: int, height: int) -> np.ndarray:
        """RGB uint8 (height, width, 3) at `level`, top-left at level-0 pixel (x0, y0). Raises SlideError."""
        import openslide

        try:
            region = self._handle.read_region((int(x0), int(y0)), int(level), (int(width), int(height)))
        except openslide.OpenSlideError as error:
            # openslide errors are sticky on a handle: reopen so the next read can succeed.
            self._reopen()
            raise SlideError(f"{self.path.name}: unreadable region at ({x0}, {y0}) level {level}: {error}") from error
        rgba = np.asarray(region)
        rgb = rgba[..., :3].copy()
        rgb[rgba[..., 3] == 0] = 255  # outside the scanned area: white background, not black
        return rgb

    def read_level(self, level: int) -> np.ndarray:
        """A whole low-resolution level as RGB; a level over MAX_MASK_PIXELS is refused (read it by tiles)."""
        width, height = self.level_dimensions[level]
        if width * height > MAX_MASK_PIXELS:
            raise SlideError(f"{self.path.name}: level {level} is {width}x{height} px, too large to read whole")
        return self.read_region(0, 0, level, width, height)

    def _reopen(self) -> None:
        with contextlib.suppress(Exception):  # a broken handle may fail to close; we replace it anyway
            self._handle.close()
        self._handle = _open_openslide(self.path)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_slide(path: Path | str, assume_mpp: float | None = None) -> WSI:
    """Open a WSI with openslide and find its µm/px.

    A slide with no usable resolution raises `SlideError`, unless the caller passes `assume_mpp` (the documented
    degraded path, e.g. `DEFAULT_ASSUMED_MPP`): then that spacing is used, `mpp_source="assumed"`, and a warning
    is logged.
    """
    path = Path(path)
    handle = _open_openslide(path)
    mpp = mpp_from_properties(handle.properties)
    source = "properties"
    if mpp is None:
        if assume_mpp is None:
            handle.close()
            raise SlideError(f"slide {path.name} has no usable resolution (no openslide.mpp-x, no TIFF "
                             f"resolution tags in cm/inch within {PLAUSIBLE_MPP} µm/px)")
        log.warning("slide %s has no resolution; assuming %.3f µm/px", path.name, assume_mpp)
        mpp, source = (float(assume_mpp), float(assume_mpp)), "assumed"
    return WSI(path=path, mpp=mpp, mpp_source=source,
               level_dimensions=[tuple(map(int, d)) for d in handle.level_dimensions],
               level_downsamples=[float(d) for d in handle.level_downsamples], _handle=handle)


@dataclass
class TissueMask:
    """A boolean tissue map and its scale to slide level-0 pixels (level-0 px per mask px, x and y)."""

    tissue: np.ndarray  # bool (H, W)
    scale: tuple[float, float]
    source: str  # "mask" (the given file), "threshold" or "all" (fallbacks)

    @property
    def fraction(self) -> float:
        return float(self.tissue.mean()) if self.tissue.size else 0.0


def _binarise(values: np.ndarray, label: str) -> np.ndarray:
    """1 = tissue: a 0/1 mask is > 0; a 0/255 (or lossy) mask is > half its maximum. Non-finite values refuse it."""
    if values.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            raise SlideError(f"tissue mask {label}: {bad:,} of {values.size:,} pixels are not finite")
    top = float(values.max()) if values.size else 0.0
    return values > (0 if top <= 1 else top // 2)


def _declared(path: Path) -> str:
    return f"{path.name} ({path.stat().st_size / 1e6:.1f} MB)"


def _read_mask_pixels(path: Path, max_pixels: int) -> np.ndarray:
    """The finest mask level under `max_pixels`, first band, via pyvips (reads deflate/LZW/JPEG masks alike).

    Only headers are read to pick the level. When even the coarsest level is larger, it is shrunk while decoding,
    but only up to MAX_MASK_DECODE_PIXELS declared pixels: a larger one (a tiny file can declare 30 Gpx) is
    refused before any pixel is decoded.
    """
    import pyvips

    if not path.is_file():
        raise SlideError(f"tissue mask file not found: {path}")
    try:
        first = pyvips.Image.new_from_file(str(path), access="sequential")
        pages = int(first.get("n-pages")) if "n-pages" in first.get_fields() else 1
        chosen = first
        for page in range(pages):  # finest first; stop at the first that fits, else keep the coarsest
            chosen = pyvips.Image.tiffload(str(path), page=page, access="sequential") if pages > 1 else first
            if chosen.width * chosen.height <= max_pixels:
                break
        declared = chosen.width * chosen.height
        if declared > max_pixels:  # no level small enough
            if declared > MAX_MASK_DECODE_PIXELS:
                raise SlideError(f"tissue mask {_declared(path)}: its smallest level declares {chosen.width}x"
                                 f"{chosen.height} px, over the {MAX_MASK_DECODE_PIXELS:,}-pixel decoding limit; "
                                 "not decoded")
            factor = math.sqrt(declared / max_pixels)
            chosen = chosen.extract_band(0).resize(1.0 / factor, kernel="nearest")
        return np.asarray(chosen.extract_band(0).numpy())
    except pyvips.Error as error:
        raise SlideError(f"unreadable tissue mask {_declared(path)}: "
                         f"{str(error).strip().splitlines()[0]}") from error
    except MemoryError as error:
        raise SlideError(f"out of memory decoding tissue mask {_declared(path)}") from error


def read_tissue_mask(mask_path: Path | str, wsi: WSI, max_pixels: int = MAX_MASK_PIXELS,
                     aspect_tolerance: float = 0.02) -> TissueMask:
    """Read a tissue mask at its own resolution and map it to the slide by the ratio of level-0 dimensions.

    Raises `SlideError` when the mask's aspect ratio does not match the slide's (a mask for another slide, or a
    crop): the x and y scales then differ by more than `aspect_tolerance` plus one mask pixel of rounding.
    """
    mask_path = Path(mask_path)
    pixels = _read_mask_pixels(mask_path, max_pixels)
    height, width = pixels.shape[:2] if pixels.ndim >= 2 else (pixels.size, 1)
    if min(width, height) < MIN_MASK_SIDE:
        raise SlideError(f"tissue mask {mask_path.name} is {width}x{height} px: too small to locate tissue")
    slide_w, slide_h = wsi.dimensions
    sx, sy = slide_w / width, slide_h / height
    rounding = 1.0 / min(width, height)
    if abs(sx - sy) / max(sx, sy) > aspect_tolerance + rounding:
        raise SlideError(f"tissue mask {mask_path.name} ({width}x{height}) does not match slide "
                         f"{wsi.path.name} ({slide_w}x{slide_h}): x scale {sx:.3f} vs y scale {sy:.3f}")
    return TissueMask(tissue=_binarise(pixels, mask_path.name), scale=(sx, sy), source="mask")


def estimate_tissue_mask(wsi: WSI, max_side: int = ESTIMATE_MAX_SIDE, saturation_threshold: int = 20) -> TissueMask:
    """Fallback tissue map when the given mask is missing or misaligned: colour saturation on a low-res level.

    H&E tissue is coloured and the glass background is grey-white, so max(RGB) - min(RGB) above a small threshold
    marks tissue; near-black pixels (pen, scanner borders) are excluded. Deterministic; no learned model.
    A slide without a level of at most `max_side` px (no pyramid) is read by tiles and averaged down, within the
    bounds of chimera_surv.limits; a slide beyond them raises SlideError.
    """
    level = next((k for k in range(wsi.level_count) if max(wsi.level_dimensions[k]) <= max_side), None)
    if level is not None:
        rgb = wsi.read_level(level).astype(np.int16)
    else:
        level = wsi.level_count - 1
        width, height = wsi.level_dimensions[level]
        if width * height > MAX_ESTIMATE_DECODE_PIXELS:
            raise SlideError(f"{wsi.path.name}: level {level} ({width}x{height} px, no level under {max_side} px) is "
                             f"over the {MAX_ESTIMATE_DECODE_PIXELS:,}-pixel limit of the tissue estimate")
        rgb = _thumbnail(wsi.path, (width, height), max_side)
        if rgb is None:
            rgb = _read_level_reduced(wsi, level, math.ceil(max(width, height) / max_side))
    saturation = rgb.max(axis=2) - rgb.min(axis=2)
    tissue = (saturation > saturation_threshold) & (rgb.max(axis=2) > 30)
    height, width = tissue.shape
    slide_w, slide_h = wsi.dimensions
    return TissueMask(tissue=tissue, scale=(slide_w / width, slide_h / height), source="threshold")


def _thumbnail(path: Path, size: tuple[int, int], max_side: int) -> np.ndarray | None:
    """The TIFF page of `size` px shrunk to `max_side` while it streams through pyvips (multi-threaded, memory
    bounded, about 10x faster than openslide tiles) as int16 RGB on white; None when pyvips cannot do it."""
    import pyvips

    try:
        first = pyvips.Image.new_from_file(str(path), access="sequential")
        pages = int(first.get("n-pages")) if "n-pages" in first.get_fields() else 1
        for page in range(pages):
            image = pyvips.Image.tiffload(str(path), page=page, access="sequential") if pages > 1 else first
            if (image.width, image.height) == tuple(size):
                break
        else:
            return None
        image = image.thumbnail_image(max_side, size="down")
        if image.hasalpha():
            image = image.flatten(background=[255, 255, 255])
        rgb = image.numpy()
    except pyvips.Error as error:
        log.info("pyvips cannot shrink %s (%s); reading it by tiles", path.name, str(error).strip()[:200])
        return None
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        return None
    return rgb[..., :3].astype(np.int16)


def _read_level_reduced(wsi: WSI, level: int, factor: int) -> np.ndarray:
    """A level averaged over `factor` x `factor` blocks, read tile by tile (memory bounded by ESTIMATE_TILE²)."""
    width, height = wsi.level_dimensions[level]
    label = f"{wsi.path.name}: level {level} ({width}x{height} px, no level under {ESTIMATE_MAX_SIDE} px)"
    step = max(factor, ESTIMATE_TILE // factor * factor)  # a whole number of blocks per tile
    out = np.empty((math.ceil(height / factor), math.ceil(width / factor), 3), dtype=np.int16)
    downsample = wsi.level_downsamples[level]
    start = time.monotonic()
    for y in range(0, height, step):
        for x in range(0, width, step):
            if time.monotonic() - start > ESTIMATE_TIME_S:
                raise SlideError(f"{label}: tissue estimate over its {ESTIMATE_TIME_S:.0f} s limit")
            tile = wsi.read_region(round(x * downsample), round(y * downsample), level,
                                   min(step, width - x), min(step, height - y))
            out[y // factor:(y + tile.shape[0] + factor - 1) // factor,
                x // factor:(x + tile.shape[1] + factor - 1) // factor] = _block_mean(tile, factor)
    return out


def _block_mean(tile: np.ndarray, factor: int) -> np.ndarray:
    """Mean RGB over `factor` x `factor` blocks (edge blocks averaged over the pixels they have)."""
    h, w = tile.shape[:2]
    rows, cols = math.ceil(h / factor), math.ceil(w / factor)
    sums = np.add.reduceat(np.add.reduceat(tile.astype(np.int64), np.arange(0, h, factor), axis=0),
                           np.arange(0, w, factor), axis=1)
    counts = np.outer(np.diff(np.append(np.arange(0, h, factor), h)), np.diff(np.append(np.arange(0, w, factor), w)))
    return (sums / counts[:rows, :cols, None]).astype(np.int16)
