"""The chosen parts refitted on a whole training part, and the protocol hooks (CV split, exported member)."""

from __future__ import annotations

from typing import Any

import numpy as np

from chimera_surv.classical import ClassicalModel, Part
from train.classical import Target, design, design_rows, fit_blocks, fit_setting
from train.data import encode_fold
from train.fit import score
from train.folds import member_name
from train.selection.inner import standardiser
from train.selection.networks import is_network, network_split_record
from train.selection.options import _available, _family, _modalities, auto_settings, with_rna_within
from train.selection.select import select


def refit(ctx: Any, arch: Any, choice: dict[str, Any], train: list[int], seed: int) -> tuple[ClassicalModel, Any]:
    """Fit the chosen parts on the whole training part; returns the model and the fold's encoding."""
    data = ctx.data
    settings = auto_settings(arch, ctx.config)
    enc = encode_fold(data, train, ctx.schema, with_rna_within(ctx.config, choice.get("rna_within")))
    rows, present = design_rows(enc, data, data.modalities, settings["pools"])
    y = Target.of(data, train, ctx.survival)
    available = _available(settings, data.modalities)
    parts = []
    for p in choice["parts"]:
        cand = choice["candidates"][p["candidate"]]
        blocks = fit_blocks(rows, present, train, _modalities(cand, available), settings["pools"],
                            settings["wsi_components"])
        X = design(blocks, rows, present, len(data))
        predictor = fit_setting(_family(cand), X[train], y, seed, p["setting"])
        # z-scored on its own training part, as every part was on each inner training part when the weights were
        # scored: the weights that were scored are the weights that ship
        shift, scale = standardiser(predictor.predict(X[train]))
        parts.append(Part(p["candidate"], blocks, predictor, p["weight"], shift, scale))
    return ClassicalModel(choice["chosen"], parts), (enc, rows, present)


def model_rows(model: ClassicalModel, rows: dict[str, np.ndarray], idx: list[int]) -> dict[str, np.ndarray]:
    return {m: rows[m][idx] for m in model.modalities}


def predict_idx(model: ClassicalModel, rows: dict[str, np.ndarray], present: dict[str, np.ndarray],
                idx: list[int]) -> np.ndarray:
    return model.predict(model_rows(model, rows, idx), {m: present[m][idx] for m in model.modalities})



def run_classical_split(ctx: Any, arch_name: str, arch: Any, split: Any, seed: int) -> dict[str, Any]:
    """One CV/hold-out split: select on split.train's inner folds, then predict split.test with the committee of
    the chosen option's inner k-fold models (`cv_model: committee`, the default) or a refit on split.train."""
    train, test = list(split.train), list(split.test)
    settings = auto_settings(arch, ctx.config)
    choice = select(ctx, arch, train, seed, also_predict=test if settings["cv_model"] == "committee" else None)
    if is_network(choice["chosen"]):  # the inner splits chose a network: retrain it on the whole training part
        return {**network_split_record(ctx, arch_name, arch, choice, split, seed), "auto": _choice_summary(choice)}
    if "committee_risk" in choice:
        risk, modalities = np.asarray(choice["committee_risk"]), _choice_modalities(ctx, settings, choice)
    else:
        model, (_, rows, present) = refit(ctx, arch, choice, train, seed)
        risk, modalities = predict_idx(model, rows, present, test), model.modalities
    data = ctx.data
    return {"arch": arch_name, "split": split.name, "repeat": split.repeat, "fold": split.fold, "test": test,
            "case_ids": [data.case_ids[i] for i in test], "risk": [float(r) for r in risk],
            "metric": score(ctx.survival, data, test, risk), "best_epoch": 0, "inner_val_metric":
            choice["scores"][choice["chosen"]], "history": [], "modalities": modalities,
            "n_train": len(train), "n_inner_val": 0, "config_hash": ctx.config_hash, "arch_config": arch,
            "cv_model": "committee" if "committee_risk" in choice else "refit", "auto": _choice_summary(choice)}


def _choice_modalities(ctx: Any, settings: dict[str, Any], choice: dict[str, Any]) -> list[str]:
    """The modalities the chosen parts read (what a refit model's `modalities` would list)."""
    available = _available(settings, ctx.data.modalities)
    out: list[str] = []
    for p in choice["parts"]:
        out += [m for m in _modalities(choice["candidates"][p["candidate"]], available) if m not in out]
    return out


def _choice_summary(choice: dict[str, Any]) -> dict[str, Any]:
    return {k: choice.get(k) for k in ("chosen", "best", "default", "rule", "inner", "n_inner_splits", "split_kinds",
                                       "scores", "gains_vs_default", "settings", "rna_within", "rna_within_scores",
                                       "dropped_candidates")}


def classical_member(ctx: Any, arch: Any, choice: dict[str, Any], split: Any,
                     seed: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One exported member: the chosen model refitted on split.train; its held-out fold gives OOF risks."""
    train, test = list(split.train), list(split.test)
    model, (enc, rows, present) = refit(ctx, arch, choice, train, seed)
    train_risk = predict_idx(model, rows, present, train)
    oof_risk = predict_idx(model, rows, present, test)
    all_risk = predict_idx(model, rows, present, list(range(len(ctx.data))))  # for the shipped average's spread
    shift, scale = float(np.mean(train_risk)), float(np.std(train_risk)) or 1.0
    mods = model.modalities
    record = {"name": member_name(split), "split": split.name, "oof": test,
              "oof_risk": [float(r) for r in oof_risk], "risk_all": [float(r) for r in all_risk],
              "risk_shift": shift, "risk_scale": scale,
              "kind": "classical", "network": model.to_dict(),
              "input_dims": {m: int(rows[m].shape[1]) if m != "wsi" else int(enc.dims["wsi"]) for m in mods},
              "modalities": mods, "preprocessing": {m: s for m, s in enc.preprocessing.items() if m in mods},
              "best_epoch": 0, "history": [], "config_hash": ctx.config_hash, "auto": _choice_summary(choice)}
    return record, model.arrays()

