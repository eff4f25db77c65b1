"""Feature design for the classical families: one block per modality, each fitted on training patients only.

A vector modality (clinical, RNA, MRI, slide_embedding) enters as its fold-fitted encoding (the same preprocessing the networks
use); a slide bag enters as attention-free pooled summaries (mean, std, an upper quantile `q90` or the max, over
patches) reduced by a fold-fitted PCA. Why a quantile rather than the max: a bag cut by the deadline is an evenly
spread prefix, and a quantile (like the mean) of a prefix estimates the full bag's, while the max of a prefix is
biased low (by about 1.4 between-patient SDs on a 64-patch prefix of synthetic bags, test_clock_faults.py); "max" is kept for
bundles that were trained with it. Every block is then centred and scaled with training statistics, and a missing modality is imputed with the
training mean (zeros after centring): a documented degraded path, never NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

POOLS = ("mean", "max", "std")
PREFIX_ROBUST_POOLS = ("mean", "q90", "std")  # what a bag cut by the deadline leaves nearly unbiased
_FIXED_POOLS = ("mean", "max", "std", "min")


def quantile_of(pool: str) -> float | None:
    """`q90` → 0.9 (`q1`..`q99`: a per-feature quantile, numpy's linear interpolation); None for another pool."""
    if len(pool) in (2, 3) and pool[0] == "q" and pool[1:].isdigit() and 1 <= int(pool[1:]) <= 99:
        return int(pool[1:]) / 100.0
    return None


def check_pools(pools: tuple[str, ...] | list[str]) -> None:
    unknown = [p for p in pools if p not in _FIXED_POOLS and quantile_of(p) is None]
    if unknown:
        raise ValueError(f"unknown bag pooling {unknown} (known: {list(_FIXED_POOLS)} and q1..q99)")


def pool_bag(bag: np.ndarray | None, pools: tuple[str, ...] | list[str] = POOLS) -> np.ndarray | None:
    """(N, D) patch features → (len(pools) * D,) summary; None for an empty or missing bag."""
    if bag is None or len(bag) == 0:
        return None
    check_pools(pools)
    bag = np.asarray(bag, dtype=np.float64)
    fixed = {"mean": np.mean, "max": np.max, "std": np.std, "min": np.min}
    return np.concatenate([fixed[p](bag, axis=0) if p in fixed else np.quantile(bag, quantile_of(p), axis=0)
                           for p in pools])


@dataclass
class DesignBlock:
    """One modality's columns of the design matrix: optional PCA (slides), then centre/scale."""

    modality: str
    center: np.ndarray
    scale: np.ndarray
    pools: list[str] = field(default_factory=list)  # non-empty for a slide-bag block
    pca_mean: np.ndarray | None = None
    pca_components: np.ndarray | None = None  # (k, D)

    @property
    def width(self) -> int:
        return int(self.center.shape[0])

    @classmethod
    def fit(cls, modality: str, rows: np.ndarray, pools: list[str] | None = None,
            n_components: int | None = None) -> DesignBlock:
        """Fit on the training rows that have the modality (already pooled for slides)."""
        rows = np.asarray(rows, dtype=np.float64)
        pca_mean = pca_components = None
        if pools:
            pca_mean = rows.mean(0)
            k = min(int(n_components or 16), rows.shape[0] - 1, rows.shape[1])
            if k < 1:
                raise ValueError("too few training slides for a pooled-bag PCA")
            _, _, vt = np.linalg.svd(rows - pca_mean, full_matrices=False)
            # A fixed sign per component (largest |loading| positive) makes the fit deterministic across BLAS.
            signs = np.sign(vt[np.arange(k), np.abs(vt[:k]).argmax(1)])
            pca_components = vt[:k] * np.where(signs == 0, 1.0, signs)[:, None]
            rows = (rows - pca_mean) @ pca_components.T
        center = rows.mean(0)
        scale = rows.std(0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        return cls(modality, center, scale, list(pools or []), pca_mean, pca_components)

    def transform(self, rows: np.ndarray | None, n: int = 1) -> np.ndarray:
        """(n, width); None (modality missing) → zeros, the training mean."""
        if rows is None:
            return np.zeros((n, self.width))
        rows = np.asarray(rows, dtype=np.float64)
        if self.pca_components is not None:
            rows = (rows - self.pca_mean) @ self.pca_components.T
        out = (rows - self.center) / self.scale
        return np.nan_to_num(np.clip(out, -10.0, 10.0), nan=0.0)

    # -- serialisation: the JSON part and the arrays part (safetensors) ------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"modality": self.modality, "pools": list(self.pools), "width": self.width}

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"center": self.center, "scale": self.scale}
        if self.pca_components is not None:
            out.update(pca_mean=self.pca_mean, pca_components=self.pca_components)
        return out

    @classmethod
    def from_parts(cls, doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> DesignBlock:
        block = cls(doc["modality"], arrays["center"], arrays["scale"], list(doc.get("pools") or []),
                    arrays.get("pca_mean"), arrays.get("pca_components"))
        if block.width != int(doc["width"]):
            raise ValueError(f"design block {doc['modality']}: width {block.width} != {doc['width']}")
        return block


@dataclass
class LeaveOneOut:
    """The pooled summaries of a bag with one patch left out, for every patch, in closed form.

    Why: a per-patch occlusion map of a pooled-bag model needs N pooled rows, one per left-out patch; recomputing
    each pool is O(N^2 D). Mean and std (population, as `pool_bag`) follow from the centred bag; max and min from
    the top two (bottom two) values per feature. `rows(start, stop)` gives the rows of patches start..stop-1 so a
    caller can go in chunks (N x len(pools) x D float64 can be large).
    """

    bag: np.ndarray  # (N, D) float64
    pools: tuple[str, ...]

    def __post_init__(self) -> None:
        bag = np.asarray(self.bag, dtype=np.float64)
        if bag.ndim != 2 or len(bag) < 2:
            raise ValueError(f"leave-one-out pooling needs a bag of at least 2 patches, got shape {bag.shape}")
        check_pools(self.pools)
        self.bag = bag
        if any(quantile_of(p) is not None for p in self.pools):
            # quantiles: each feature's sorted values and every patch's rank in them (stable: ties are equal)
            order = np.argsort(bag, axis=0, kind="stable")
            self._sorted = np.take_along_axis(bag, order, axis=0)
            self._rank = np.empty_like(order)
            np.put_along_axis(self._rank, order, np.arange(len(bag))[:, None], axis=0)
        n = len(bag)
        self._mean = bag.mean(0)
        self._centred_sq = ((bag - self._mean) ** 2).sum(0)
        # Which patch holds each feature's max (min), the max and the runner-up (equal to the max on a tie).
        if "max" in self.pools:
            self._top = (bag.argmax(0), bag.max(0), np.partition(bag, n - 2, axis=0)[n - 2])
        if "min" in self.pools:
            self._bottom = (bag.argmin(0), bag.min(0), np.partition(bag, 1, axis=0)[1])
        self._n = n

    def rows(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """(stop - start, len(pools) * D): row i is `pool_bag(bag without patch start + i, pools)`."""
        stop = self._n if stop is None else min(stop, self._n)
        x = self.bag[start:stop]
        m = self._n - 1
        centred = x - self._mean
        parts = {}
        if "mean" in self.pools or "std" in self.pools:
            parts["mean"] = self._mean - centred / m
        if "std" in self.pools:
            # Sum of squares about the full mean, less patch i's, re-centred on the left-out mean.
            var = (self._centred_sq - centred ** 2) / m - (centred / m) ** 2
            parts["std"] = np.sqrt(np.maximum(var, 0.0))
        index = np.arange(start, stop)[:, None]
        if "max" in self.pools:
            arg, first, second = self._top
            parts["max"] = np.where(index == arg, second, first)
        if "min" in self.pools:
            arg, first, second = self._bottom
            parts["min"] = np.where(index == arg, second, first)
        for pool in self.pools:
            if quantile_of(pool) is not None:
                parts[pool] = self._quantile_rows(quantile_of(pool), start, stop)
        return np.concatenate([parts[p] for p in self.pools], axis=1)

    def _quantile_rows(self, q: float, start: int, stop: int) -> np.ndarray:
        """The q-quantile (linear) of the n - 1 values left when patch i is out: value j of the reduced sorted
        array is sorted[j] below i's rank and sorted[j + 1] from it on."""
        m = self._n - 1
        h = q * (m - 1)
        lo = int(np.floor(h))
        hi, frac = min(lo + 1, m - 1), h - lo
        rank = self._rank[start:stop]
        s = self._sorted
        low = np.where(lo < rank, s[lo], s[lo + 1])
        high = np.where(hi < rank, s[hi], s[hi + 1])
        return low + frac * (high - low)
