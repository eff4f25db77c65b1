"""Feature-space bag augmentation for training: a whole-slide shift, a scale, patch noise and patch dropout.

Why: a site's stain and scanner move every patch feature of a slide together. Perturbing each training bag as a
whole (a shift and a scale per feature, both in units of the bag's own per-feature spread) shows the network the
same patient under many sites, at the cost of a few array operations per batch; patch noise and dropout add
instance-level variation. Used only in training (`train.bag_augment`); evaluation and inference never see it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BAG_AUGMENT_KEYS = ("shift", "scale", "noise", "drop")


def check_bag_augment(config: dict[str, Any] | None) -> dict[str, float]:
    """{} when off; otherwise the four strengths (missing ones 0). Unknown keys or negative values raise."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(BAG_AUGMENT_KEYS))
    if unknown:
        raise ValueError(f"unknown train.bag_augment keys {unknown}; known: {BAG_AUGMENT_KEYS}")
    values = {k: float(config.get(k, 0.0)) for k in BAG_AUGMENT_KEYS}
    if any(v < 0 for v in values.values()) or values["drop"] >= 1:
        raise ValueError(f"train.bag_augment strengths must be >= 0 (drop < 1), got {values}")
    return values if any(values.values()) else {}


def augment_bag(bag: np.ndarray, rng: np.random.Generator, strengths: dict[str, float]) -> np.ndarray:
    """(N, D) float32 → (N', D): keep each patch with 1 - drop (at least one), then
    x * (1 + scale * e1) + shift * sd * e2 per bag and feature, + noise * sd * e3 per patch (e ~ N(0, 1))."""
    if not strengths or len(bag) == 0:
        return bag
    if strengths["drop"] > 0 and len(bag) > 1:
        keep = rng.random(len(bag)) >= strengths["drop"]
        keep[rng.integers(len(bag))] = True
        bag = bag[keep]
    spread = bag.std(axis=0) if len(bag) > 1 else np.abs(bag[0])
    dim = bag.shape[1]
    out = bag * (1.0 + strengths["scale"] * rng.standard_normal(dim))
    out = out + strengths["shift"] * spread * rng.standard_normal(dim)
    if strengths["noise"] > 0:
        out = out + strengths["noise"] * spread * rng.standard_normal(bag.shape)
    return out.astype(np.float32)
