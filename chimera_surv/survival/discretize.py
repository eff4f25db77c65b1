"""Discrete-time grids for DeepHit: the pycox label transform and the ModalSurv binning.

Two conventions are needed because the seeds disagree (seed-methods.md §0.3 vs §4.3):
pycox moves an event to the cut at or after its time and a censoring to the cut at or before it;
ModalSurv buckets every time into fixed equal-width bins and clamps to the last bin.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Scheme = Literal["equidistant", "quantiles"]


def make_cuts(times: np.ndarray, n: int, scheme: Scheme = "equidistant", min_: float = 0.0,
              events: np.ndarray | None = None) -> np.ndarray:
    """Cut points on [min_, max(times)] (pycox ``LabTransDiscreteTime`` semantics).

    ``quantiles`` places cuts at KM-free empirical quantiles of the *event* times (when given),
    deduplicated, so bins hold similar numbers of events.
    """
    times = np.asarray(times, dtype=np.float64)
    if n < 2:
        raise ValueError("need at least 2 cut points")
    if scheme == "equidistant":
        cuts = np.linspace(min_, times.max(), n)
    elif scheme == "quantiles":
        ref = times if events is None else times[np.asarray(events).astype(bool)]
        if ref.size == 0:
            ref = times
        qs = np.quantile(ref, np.linspace(0.0, 1.0, n))
        cuts = np.unique(np.concatenate([[min_], qs[1:-1], [times.max()]]))
    else:
        raise ValueError(f"unknown cut scheme '{scheme}'")
    return cuts.astype(np.float64)


def pycox_bin(times: np.ndarray, events: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Index of each (time, event) on ``cuts``: events go right, censorings go left.

    Times beyond the last cut are clamped to the last index (they are censored there in pycox too).
    """
    times = np.asarray(times, dtype=np.float64)
    events = np.asarray(events).astype(bool)
    cuts = np.asarray(cuts, dtype=np.float64)
    right = np.searchsorted(cuts, times, side="left")  # first cut >= t
    left = np.searchsorted(cuts, times, side="right") - 1  # last cut <= t
    idx = np.where(events, right, left)
    return np.clip(idx, 0, len(cuts) - 1).astype(np.int64)


def modalsurv_edges(start: float = 5.0, stop: float = 250.0, n_bins: int = 30) -> np.ndarray:
    """ModalSurv's Task 3 bin edges: ``linspace(5, 250, 31)`` months (n_bins + 1 edges)."""
    return np.linspace(start, stop, n_bins + 1)


def modalsurv_bin(times: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """ModalSurv's ``bucketize(t, edges, right=False) - 1`` clamped to ``[0, n_bins-1]``."""
    times = np.asarray(times, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    # torch.bucketize(right=False) returns the first i with edges[i] >= t, i.e. searchsorted side="left".
    idx = np.searchsorted(edges, times, side="left") - 1
    return np.clip(idx, 0, len(edges) - 2).astype(np.int64)


def bin_centres(edges: np.ndarray) -> np.ndarray:
    """Mid-points of consecutive edges (the times a pmf over bins refers to)."""
    edges = np.asarray(edges, dtype=np.float64)
    return 0.5 * (edges[:-1] + edges[1:])
