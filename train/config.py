"""The training config (YAML): defaults, path resolution and a stable hash that names a run.

Everything a new cohort needs is here: the cohort root and label source, the clinical schema (a task id or any JSON
path), the gene list (a JSON path, or `from_cohort`), the feature recipe, the protocol and the architectures.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

DEFAULTS: dict[str, Any] = {
    "task": 3,
    "seed": 0,
    "threads": 1,
    "cohort": {"root": None, "labels": {}, "cohort_regex": r"^([0-9]+[A-Za-z])_", "default_cohort": "all"},
    "schema": None,  # task id, "task3" or a schema JSON path; default: the task's schema
    "genes": None,  # JSON list path, "from_cohort", or null (no RNA)
    "modalities": None,  # default: the task's modalities
    "recipe": {"encoder": "test-tiny", "target_mpp": 0.5, "patch_size": 224, "min_tissue": 0.1},
    "encoder_root": "model/encoders",
    "mri_kind": "measurements",
    "device": "cpu",
    "work_dir": "runs/default",
    "out": None,  # the bundle folder; default model/<task name>
    "preprocess": {"rna": {"log1p": True, "zscore": True, "top_var": None, "pca": None, "within_sample": "none"},
                   "mri": {}, "clinical": {}},
    "protocol": {"folds": 5, "repeats": 1, "inner_val": 0.2, "cohort_holdout": True, "bootstrap": 500,
                 "members": 5},
    "train": {"epochs": 60, "batch_size": 32, "lr": 1e-3, "weight_decay": 1e-4, "patience": 15,
              "min_epochs": 5, "max_patches": 256, "modality_dropout": {}, "grad_clip": 5.0,
              "loss": None, "bag_augment": {}},  # bag_augment: train/augment.py (shift, scale, noise, drop)
    "model": {},  # the exported architecture (encoders, fusion, head); empty = train/networks.py defaults
    "compare": {},  # name → network config, evaluated on the same folds as `model`
    "calibration": None,  # default km_quantile (survival) / platt (Task 2)
    "audit": {},  # optional keys maskers, missing, batch_size; defaults in train/audit.py (audit_settings)
}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_path(value: str | Path | None, base: Path) -> Path | None:
    """Relative paths are taken relative to the config file's folder (so a config runs from any directory)."""
    if value is None:
        return None
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def load_config(source: str | Path | dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge a YAML file (or dict) over DEFAULTS; `_base` holds the folder relative paths are resolved against."""
    if isinstance(source, dict):
        raw, base = source, Path.cwd()
    else:
        path = Path(source)
        raw, base = yaml.safe_load(path.read_text()) or {}, path.resolve().parent
    config = _merge(DEFAULTS, raw)
    config = _merge(config, overrides or {})
    config["_base"] = str(base)
    return config


NOT_HASHED = ("_base", "work_dir", "out", "encoder_root", "device", "compare", "audit")


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of what changes a trained model: paths, the comparison list and the audit are left out, so adding
    a comparison architecture reuses the exported model's folds and members (each CV record also stores its own
    architecture config)."""
    keep = {k: v for k, v in config.items() if k not in NOT_HASHED}
    keep["protocol"] = {k: v for k, v in keep.get("protocol", {}).items() if k != "bootstrap"}
    keep["cohort"] = {k: v for k, v in keep.get("cohort", {}).items() if k != "root"}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]
