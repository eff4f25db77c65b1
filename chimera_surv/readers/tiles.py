"""Regions of a tiled TIFF page decoded tile by tile with tifffile/imagecodecs (libjpeg-turbo), no image library.

Why: at level 0 a 224-px patch needs no resize, so decode is nearly all the work, and a libvips region fetch ran at
about 0.45-0.5 of the raw libjpeg-turbo rate on the same tiles (benchmarks/wsi_throughput.py), the rest being its
region/tile-cache machinery. Reading each tile's bytes with one `pread` and decoding them straight into the output
runs close to the raw rate and gives the same pixels (tested against openslide). Pages that are not tiled 8-bit
RGB/YCbCr(A) are left to pyvips/openslide.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from chimera_surv.readers.slide import SlideError

# TIFF photometric interpretations we decode to RGB: RGB, YCbCr
_PHOTOMETRIC_RGB = {2, 6}


class TiledPage:
    """One tiled TIFF page: its tile index (offsets, byte counts) and decoder; `read` returns RGB uint8."""

    def __init__(self, fd: int, page: Any) -> None:
        self._fd = fd
        self._decode = page.decode
        self._offsets = np.asarray(page.dataoffsets, dtype=np.int64)
        self._counts = np.asarray(page.databytecounts, dtype=np.int64)
        self._tables = page.jpegtables
        self.width, self.height = int(page.imagewidth), int(page.imagelength)
        self.tile_w, self.tile_h = int(page.tilewidth), int(page.tilelength)
        self._across = -(-self.width // self.tile_w)

    def _tile(self, tx: int, ty: int) -> np.ndarray:
        index = ty * self._across + tx
        count = int(self._counts[index])
        data = os.pread(self._fd, count, int(self._offsets[index])) if count > 0 else b""
        if count == 0 or len(data) != count:
            raise SlideError(f"missing or truncated tile ({tx}, {ty}): {len(data)} of {count} bytes")
        try:
            tile = self._decode(data, index, jpegtables=self._tables)[0]
        except Exception as error:  # any codec error means an unreadable tile
            raise SlideError(f"undecodable tile ({tx}, {ty}): {str(error).strip()[:120]}") from error
        if tile is None:
            raise SlideError(f"undecodable tile ({tx}, {ty})")
        return tile.reshape(tile.shape[-3:])

    def read(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        """RGB uint8 (height, width, 3) at (x, y) in page pixels; the area must lie inside the page."""
        if x < 0 or y < 0 or x + width > self.width or y + height > self.height:
            raise SlideError(f"region ({x}, {y}, {width}, {height}) outside the page {self.width}x{self.height}")
        out = np.empty((height, width, 3), np.uint8)
        tw, th = self.tile_w, self.tile_h
        for ty in range(y // th, (y + height - 1) // th + 1):
            for tx in range(x // tw, (x + width - 1) // tw + 1):
                tile = self._tile(tx, ty)
                ax0, ay0 = max(tx * tw, x), max(ty * th, y)
                ax1, ay1 = min((tx + 1) * tw, x + width), min((ty + 1) * th, y + height)
                out[ay0 - y:ay1 - y, ax0 - x:ax1 - x] = tile[ay0 - ty * th:ay1 - ty * th,
                                                             ax0 - tx * tw:ax1 - tx * tw, :3]
        return out


class TiledTiff:
    """The pages of a TIFF file that `TiledPage` can read, keyed by pyramid level (matched on size)."""

    def __init__(self, path: Path, level_dimensions: list[tuple[int, int]]) -> None:
        import tifffile

        self.pages: dict[int, TiledPage] = {}
        self._fd = os.open(str(path), os.O_RDONLY)
        try:
            with tifffile.TiffFile(str(path)) as tif:
                for page in tif.pages:
                    level = _level_of(page, level_dimensions)
                    if level is not None and level not in self.pages and _supported(page):
                        self.pages[level] = TiledPage(self._fd, page)
        except Exception:  # noqa: BLE001 - tifffile cannot parse it: the caller falls back to pyvips/openslide
            self.pages = {}

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _level_of(page: Any, level_dimensions: list[tuple[int, int]]) -> int | None:
    size = (int(page.imagewidth), int(page.imagelength))
    return next((level for level, dims in enumerate(level_dimensions) if tuple(dims) == size), None)


def _supported(page: Any) -> bool:
    """Tiled, 8-bit, interleaved RGB or YCbCr with 3 or 4 samples (alpha dropped), not a SubIFD trick."""
    return (bool(page.is_tiled) and int(page.bitspersample) == 8 and int(page.planarconfig) == 1
            and int(page.samplesperpixel) in (3, 4) and int(page.photometric) in _PHOTOMETRIC_RGB
            and int(getattr(page, "imagedepth", 1)) == 1 and len(page.dataoffsets) > 0)
