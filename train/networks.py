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
    "slide_embedding": {"name": "mlp", "hidden": [32], "dropout": 0.25},  # one slide-encoder vector, like MRI's
}


MODALITY_KEYS = ("modalities", "encoders", "missing")  # what a compare entry inherits from the main model
ARCH_KEYS = ("modalities", "encoders", "fusion", "head", "missing", "init")


def is_bag_encoder(spec: dict[str, Any]) -> bool:
    """Whether a MODALITY_ENCODERS config pools a patch bag (built on the meta device: no memory, no time)."""
    import torch

    from chimera_surv.models import MODALITY_ENCODERS

    with torch.device("meta"):
        return bool(getattr(MODALITY_ENCODERS.build(spec, dim=8), "is_bag", False))


def preset_architecture(name: str) -> dict[str, Any]:
    """A seed preset (chimera_surv.models.PRESETS) as an architecture: encoders per modality, fusion, head, init.

    The preset's input widths are dropped: they come from this cohort's preprocessing.
    """
    from chimera_surv.models import preset

    cfg = preset(name)
    arch = {"encoders": {m: spec["encoder"] for m, spec in cfg["modalities"].items()},
            "fusion": cfg["fusion"], "head": cfg.get("head") or {"name": "cox"}}
    for key in ("init", "missing"):
        if key in cfg:
            arch[key] = cfg[key]
    return arch


def resolve_architecture(entry: dict[str, Any], main: Any = None, name: str = "compare") -> dict[str, Any]:
    """A `compare` entry completed: the main model's modality settings < the entry's `preset` < its own keys.

    Why: a comparison row must run the model it names. Without inheritance a seed entry silently got the
    defaults (a 64-d slide encoder instead of seed 002's 512/256, a Cox head instead of ModalSurv's DeepHit).
    Inherited from `main` (the `model` section): `modalities`, `encoders` (per modality), `missing`; never its
    fusion, head or init. The preset (e.g. `seed002_abmil_pg`) then sets the encoders of its modalities, the
    fusion, the head and the init; the entry's own keys win last (`encoders` merge per modality).
    A slide bag needs a bag encoder: a preset whose slide encoder takes a vector (ModalSurv's TITAN slide
    embedding) must be given `encoders.wsi` by the entry, else this raises.
    """
    entry = copy.deepcopy(entry or {})
    unknown = set(entry) - set(ARCH_KEYS) - {"preset"}
    if unknown:
        raise ValueError(f"{name}: unknown architecture keys {sorted(unknown)} (known: {ARCH_KEYS + ('preset',)})")
    arch: dict[str, Any] = {}
    if isinstance(main, dict):
        arch = {k: copy.deepcopy(main[k]) for k in MODALITY_KEYS if k in main}
    layers = [preset_architecture(entry.pop("preset"))] if "preset" in entry else []
    for layer in layers + [entry]:
        for key, value in layer.items():
            if key == "encoders":
                arch["encoders"] = {**(arch.get("encoders") or {}), **copy.deepcopy(value)}
            else:
                arch[key] = copy.deepcopy(value)
    wsi = (arch.get("encoders") or {}).get("wsi")
    if wsi is not None and not is_bag_encoder(wsi):
        raise ValueError(f"{name}: the wsi input is a patch bag but encoder '{wsi['name']}' takes a vector; "
                         "give the entry its own encoders.wsi (a bag encoder)")
    return arch


def resolve_architectures(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`{"model": config["model"], **resolved compare entries}` in config order (train/protocol.py)."""
    from train.selection import is_classical

    main = config.get("model")
    out = {"model": main}
    for name, entry in (config.get("compare") or {}).items():
        # a classical entry (auto or a family) has no network keys to inherit or complete: train/selection/ reads it
        out[name] = entry if is_classical(entry) else resolve_architecture(entry, main, f"compare.{name}")
    return out


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
    head = copy.deepcopy(arch.get("head") or {"name": "cox" if survival else "binary"})
    config = {"modalities": modalities, "fusion": fusion, "head": head, "missing": arch.get("missing", "token")}
    if arch.get("init"):
        config["init"] = arch["init"]
    return config, dict(dims)


def with_time_grid(net_cfg: dict[str, Any], train_cfg: dict[str, Any], time: Any,
                   event: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(network config, train config) with a DeepHit head's time grid fitted on this fold's TRAINING times.

    Why: a DeepHit head and its loss must share one grid, and the grid is data (the max follow-up, event-time
    quantiles), so it is fitted per fold like the preprocessing. pycox: `make_cuts` (head `grid`, else
    `train.deephit_cuts`: equidistant | quantiles), n_bins = number of cuts, head `bin_times` = the cuts (months).
    ModalSurv: head `grid` "modalsurv" (default) = its code's edges linspace(5, 250, n_bins + 1) months, or
    "fold" = n_bins + 1 equal-width edges on [0, max training time]; `bin_times` = bin centres. A grid already
    given (`train.loss.cuts`) is used as is. A head ranking by `event_probability` without a `horizon` gets the
    median training event time. Other heads: returned unchanged.
    """
    import numpy as np

    from chimera_surv.survival.discretize import bin_centres, make_cuts, modalsurv_edges

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
    event = np.asarray(event).astype(bool)
    n_bins = int(head.get("n_bins", 30))
    if variant == "pycox":
        scheme = head.get("grid") or train_cfg.get("deephit_cuts", "equidistant")
        cuts = loss.get("cuts") or make_cuts(time, n_bins, scheme, events=event).tolist()
        head.update(n_bins=len(cuts), bin_times=[float(c) for c in cuts])
    else:
        grid = head.get("grid") or "modalsurv"
        if grid not in ("modalsurv", "fold"):
            raise ValueError(f"unknown ModalSurv grid '{grid}' (modalsurv | fold)")
        fitted = modalsurv_edges(n_bins=n_bins) if grid == "modalsurv" else \
            np.linspace(0.0, float(time.max()), n_bins + 1)
        cuts = loss.get("cuts") or fitted.tolist()
        head.update(n_bins=len(cuts) - 1, bin_times=[float(c) for c in bin_centres(np.asarray(cuts))])
    if head.get("risk") == "event_probability" and head.get("horizon") is None:
        head["horizon"] = float(np.median(time[event] if event.any() else time))
    loss["cuts"] = [float(c) for c in cuts]
    train_cfg["loss"] = loss
    return net_cfg, train_cfg
