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


def with_time_grid(net_cfg: dict[str, Any], train_cfg: dict[str, Any], time: Any,
                   event: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(network config, train config) with a DeepHit head's time grid fitted on this fold's TRAINING times.

    Why: a DeepHit head and its loss must share one grid, and the grid is data (the max follow-up, event-time
    quantiles), so it is fitted per fold like the preprocessing. pycox: `make_cuts` (`train.deephit_cuts`:
    equidistant | quantiles), n_bins = number of cuts, head `bin_times` = the cuts (risk = −E[T] in months).
    ModalSurv: n_bins + 1 equal-width edges on [0, max time], `bin_times` = bin centres. A grid already given
    (`train.loss.cuts`) is used as is. Other heads: returned unchanged.
    """
    import numpy as np

    from chimera_surv.survival.discretize import bin_centres, make_cuts

    head = net_cfg.get("head") or {}
    if head.get("name") != "deephit":
        return net_cfg, train_cfg
    net_cfg, train_cfg = copy.deepcopy(net_cfg), copy.deepcopy(train_cfg)
    head = net_cfg["head"]
    variant = head.get("variant", "pycox")
    loss = dict(train_cfg.get("loss") or {"name": f"deephit_{variant}"})
    if loss.get("name") != f"deephit_{variant}":
        raise ValueError(f"a DeepHit head ({variant}) needs train.loss deephit_{variant}, got {loss.get('name')}")
    time = np.asarray(time, dtype=np.float64)
    n_bins = int(head.get("n_bins", 30))
    if variant == "pycox":
        cuts = loss.get("cuts") or make_cuts(time, n_bins, train_cfg.get("deephit_cuts", "equidistant"),
                                             events=np.asarray(event)).tolist()
        head.update(n_bins=len(cuts), bin_times=[float(c) for c in cuts])
    else:
        cuts = loss.get("cuts") or np.linspace(0.0, float(time.max()), n_bins + 1).tolist()
        head.update(n_bins=len(cuts) - 1, bin_times=[float(c) for c in bin_centres(np.asarray(cuts))])
    loss["cuts"] = [float(c) for c in cuts]
    train_cfg["loss"] = loss
    return net_cfg, train_cfg
