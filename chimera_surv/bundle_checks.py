"""Load-time checks of a bundle's members (issue 20): numbers that must be finite, widths that must be positive,
and a classical member's blocks exercised once on zero inputs.

Why at load: a fault found while predicting costs the case its bundle (predict.py marks it broken and uses the
prior) and used to surface as an IndexError or a NaN far from its cause; found here, it is refused with the file and
the field named. Tree structure is checked in classical/predictors.py. Raises ValueError; bundle.py adds the file.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MAX_INPUT_WIDTH = 2**20


def finite_field(value: Any, name: str, nonzero: bool = False) -> float:
    """A bundle.json number that must be finite (and non-zero for a divisor such as `risk_scale`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (nonzero and value == 0):
        raise ValueError(f"field {name!r} is {value!r}, a finite{' non-zero' if nonzero else ''} number expected")
    return float(value)


def input_dims_field(dims: Any) -> dict[str, int]:
    """`input_dims`: modality → a positive integer width."""
    if not isinstance(dims, dict) or not all(isinstance(d, int) and not isinstance(d, bool) and
                                             1 <= d <= MAX_INPUT_WIDTH for d in dims.values()):
        raise ValueError(f"field 'input_dims' is {str(dims)[:80]}, positive integer widths expected")
    return dict(dims)


def check_classical_member(member: Any) -> None:
    """Every design block's scale positive, then one risk on zero inputs (with and without a one-patch zero bag),
    which exercises every block's and predictor's shapes: it must be finite."""
    for j, part in enumerate(member.model.parts):
        for k, block in enumerate(part.blocks):
            scale = np.asarray(block.scale, dtype=np.float64)
            if scale.ndim != 1 or not (scale > 0).all():
                raise ValueError(f"part {j} block {k} ({block.modality}): 'scale' must hold positive values")
    dims = member.input_dims
    zeros = {m: np.zeros(d) for m, d in dims.items() if m != "wsi"}
    for wsi in ([None, np.zeros((1, dims["wsi"]))] if "wsi" in dims else [None]):
        if not math.isfinite(member.risk(zeros, wsi)):
            raise ValueError("a zero input gives a non-finite risk")
