"""Writers for the file formats the platform hands us: pyramidal tiled TIFF slides and masks, .mha volumes, JSON.

Slides are written the way grand-challenge's own converter writes them (pyvips, tiled JPEG pyramid, resolution tags
in px/mm with unit cm), so openslide 4 reports `openslide.mpp-x` and panimg accepts the file (ecosystem.md §1b, §1d).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def write_wsi(path: Path | str, rgb: np.ndarray, mpp: float, quality: int = 70, tile: int = 256,
              resolution: bool = True) -> Path:
    """A pyramidal tiled JPEG TIFF at `mpp` µm/px. `resolution=False` omits the tags (a bad-input fixture)."""
    import pyvips

    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected uint8 HxWx3, got {rgb.dtype} {rgb.shape}")
    image = pyvips.Image.new_from_array(np.ascontiguousarray(rgb)).copy(interpretation="srgb")
    options: dict[str, Any] = {"tile": True, "tile_width": tile, "tile_height": tile, "pyramid": True,
                               "bigtiff": True, "compression": "jpeg", "Q": quality}
    if resolution:
        options.update(xres=1000.0 / mpp, yres=1000.0 / mpp, resunit="cm")  # pyvips res is px/mm
    image.tiffsave(str(path), **options)
    return Path(path)


def write_mask(path: Path | str, mask: np.ndarray, mpp: float, tile: int = 256) -> Path:
    """A lossless (deflate) pyramidal uint8 mask, 1 = tissue, as the organisers ship them."""
    import pyvips

    values = np.ascontiguousarray(mask.astype(np.uint8))
    image = pyvips.Image.new_from_array(values).copy(interpretation="b-w")
    image.tiffsave(str(path), tile=True, tile_width=tile, tile_height=tile, pyramid=True, bigtiff=True,
                   compression="deflate", xres=1000.0 / mpp, yres=1000.0 / mpp, resunit="cm")
    return Path(path)


def write_mha(path: Path | str, volume: np.ndarray, spacing: tuple[float, float, float],
              origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
              direction: tuple[float, ...] | None = None) -> Path:
    """A compressed .mha volume. `volume` is (z, y, x) as SimpleITK's array view; spacing is (x, y, z) in mm."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(volume)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path), useCompression=True)
    return Path(path)


def write_json_atomic(path: Path | str, value: Any, indent: int | None = 4) -> Path:
    """Write JSON through a temporary file and `os.replace`, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(value, handle, indent=indent, allow_nan=False)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
