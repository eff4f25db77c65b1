"""Architecture configs (YAML, dimension-free) → the build_network config of one fold (widths filled in).

An architecture names an encoder per modality, a fusion and a head; the widths come from the fitted preprocessing
(clinical one-hot width, RNA top-k/PCA width, encoder feature width), which differ per cohort and schema. So the
same YAML trains on a cohort with another clinical schema or gene panel without edits.
"""

from __future__ import annotations

import copy
from typing import Any

DEFAULT_ENCODERS: dict[str, dict[str, Any]] = {
    "wsi": {"name": "abmil_gated", "hidden": 64, "attn_hidden": 32, "dropout": 0.25},
    "mri": {"name": "mlp", "hidden": [32], "dropout": 0.1},
    "clinical": {"name": "mlp", "hidden": [32], "dropout": 0.1},
    "rna": {"name": "mlp", "hidden": [64, 32], "dropout": 0.25},
}


def complete_network_config(arch: dict[str, Any], dims: dict[str, int],
                            survival: bool = True) -> tuple[dict[str, Any], dict[str, int]]:
    """(network config, input widths) for the modalities in `dims` (in that order).

    A one-modality architecture with a multi-modal fusion falls back to `concat_mlp` (the fusion needs ≥ 2).
    """
    encoders = arch.get("encoders") or {}
    modalities = {m: {"dim": int(d), "encoder": copy.deepcopy(encoders.get(m, DEFAULT_ENCODERS[m]))}
                  for m, d in dims.items()}
    fusion = copy.deepcopy(arch.get("fusion") or {"name": "concat_mlp", "hidden": [32], "dropout": 0.1})
    if len(dims) < 2 and fusion["name"] not in ("concat_mlp", "late_sum"):
        fusion = {"name": "concat_mlp", "hidden": [], "dropout": 0.0}
    config = {"modalities": modalities, "fusion": fusion, "head": copy.deepcopy(arch.get("head") or {"name": "cox" if survival else "binary"}),
              "missing": arch.get("missing", "token")}
    return config, dict(dims)
