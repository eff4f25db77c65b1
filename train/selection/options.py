"""`auto`'s settings and candidate list: defaults, config overrides, the candidates a cohort's modalities allow."""

from __future__ import annotations

import copy
import json
from typing import Any

from train.classical import FAMILIES

SWITCHES = ("any", "networks", "none")  # `switch`: which options may replace the default
CV_MODELS = ("committee", "refit")  # `cv_model`: what a CV split's classical choice predicts with

AUTO_DEFAULTS: dict[str, Any] = {
    "modalities": None,  # the modalities the whole choice may use (None: the run's); e.g. [clinical] for a baseline
    # the four diverse anchors; `ridge` on every modality was a near-duplicate of `coxnet` and is no longer offered
    "candidates": {
        "clinical_ridge": {"family": "ridge", "modalities": ["clinical"]},
        "coxnet": {"family": "coxnet"},
        "rsf": {"family": "rsf"},
        "gbsa": {"family": "gbsa"},
    },
    "backbone_residual": True,
    "lambdas": [0.0, 0.5, 1.0, 2.0],
    "ensembles": [],  # top-k ensembles of the best-ranked families (e.g. [2, 3]); off: picking is what overfits
    "equal_ensemble": True,  # `ensemble_equal`: every single-family candidate, z-scored, equal weights
    "default": "ensemble_equal",  # the option kept unless another beats it clearly (switch_se)
    "switch_se": 1.0,  # another option replaces the default only when its mean paired inner gain > this many SEs
    # which options may replace the default at all: "networks" (a network that clears switch_se; the classical
    # single families, backbone residuals and top-k ensembles are scored and reported, never switched to), "any", or
    # "none". "networks" since issue23-v2: on the 17 development cohorts every switch among classical options cost
    # C-index (benchmarks/selection_rules.py: mean auto - best anchor -0.0037 with "any", -0.0015 with no switch)
    "switch": "networks",
    # what a CV or cohort-held-out split's `auto` predicts its test patients with: "committee", the chosen option's
    # models fitted on the inner k-fold training parts, averaged (no extra fit: the inner fits already exist), the
    # same structure as the bundle, an average of members fitted on CV training parts; or "refit", one refit on the
    # whole training part, a model no bundle holds. "committee" since issue23-v3: on the 17 development cohorts'
    # own folds, mean auto - best anchor +0.0025 against -0.0015 (benchmarks/selection_rules.py, round 3)
    "cv_model": "committee",
    "inner_folds": 5,
    "inner_repeats": 2,
    "loco": True,
    "loco_min_size": 30,
    "loco_min_events": 10,
    "one_se": 0.0,
    "fixed": None,  # an option name (e.g. "ensemble_top3") used whatever the inner scores; they are still reported
    # RNA within-sample transforms to choose among (preprocess.py WITHIN_SAMPLE) when the inner splits hold out
    # whole cohorts; the configured `preprocess.rna.within_sample` is always the first option and the only one
    # under k-fold, where a single site cannot show whether a harmonisation transfers. Off by default: offered on
    # dataOvarian1 it was taken in 1 of 4 leave-one-study-out splits and cost 0.006 there (realdata.md)
    "rna_within": [],
    # networks as options (train/selection/networks.py): name → a `compare`-style entry (preset or encoders/fusion/
    # head), trained on every inner split; off by default, since each adds (inner splits + 1) trainings per part
    "networks": {},
    # worker processes (joblib/loky) for the networks' inner fits; each sets torch to the config's `threads`, so
    # network_jobs × threads should not exceed the cores. 1: one after another in this process
    "network_jobs": 1,
    "pools": ["mean", "max", "std"],
    "wsi_components": 16,
}


def is_classical(arch: Any) -> bool:
    """`auto`, `{name: auto, ...}` or a single classical family `{family: ridge, ...}`."""
    return arch == "auto" or (isinstance(arch, dict) and (arch.get("name") == "auto" or "family" in arch))


def auto_settings(arch: Any, config: dict[str, Any]) -> dict[str, Any]:
    """Defaults ← config `auto:` ← the architecture's own keys; a single family has no ensembles or backbone."""
    settings = copy.deepcopy(AUTO_DEFAULTS)
    for source in (config.get("auto") or {}, arch if isinstance(arch, dict) else {}):
        settings.update({k: copy.deepcopy(v) for k, v in source.items() if k not in ("name", "family")})
    if isinstance(arch, dict) and "family" in arch:
        settings["candidates"] = {"model": {k: v for k, v in arch.items() if k not in AUTO_DEFAULTS}}
        settings["backbone_residual"], settings["ensembles"], settings["equal_ensemble"] = False, [], False
    return settings


def _available(settings: dict[str, Any], modalities: list[str]) -> list[str]:
    wanted = settings.get("modalities")
    return [m for m in modalities if not wanted or m in wanted]


def _modalities(cand: dict[str, Any], available: list[str]) -> list[str]:
    wanted = cand.get("modalities") or available
    return [m for m in available if m in wanted]


def _family(cand: dict[str, Any]) -> Any:
    return FAMILIES.build({"name": cand["family"], **(cand.get("params") or {})})



def with_rna_within(config: dict[str, Any], within: str | None) -> dict[str, Any]:
    """The config with `preprocess.rna.within_sample` set (None: unchanged)."""
    if within is None:
        return config
    out = copy.deepcopy(config)
    out.setdefault("preprocess", {}).setdefault("rna", {})["within_sample"] = within
    return out


def configured_within(config: dict[str, Any]) -> str:
    return str(((config.get("preprocess") or {}).get("rna") or {}).get("within_sample") or "none")



def _candidates(settings: dict[str, Any], available: list[str]) -> dict[str, dict[str, Any]]:
    """The configured candidates whose modalities exist, plus the residual model of the backbone."""
    out: dict[str, dict[str, Any]] = {}
    seen = set()
    for n, c in settings["candidates"].items():
        key = json.dumps({**c, "modalities": _modalities(c, available)}, sort_keys=True)
        if _modalities(c, available) and key not in seen:  # e.g. `ridge` is `clinical_ridge` on a clinical cohort
            out[n] = c
            seen.add(key)
    others = [m for m in available if m != "clinical"]
    if settings.get("backbone_residual") and "clinical" in available and others and "clinical_ridge" in out:
        out["residual_ridge"] = {"family": "ridge", "modalities": others}
    return out

