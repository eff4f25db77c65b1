"""`model: auto` and single classical families: selection by nested inner CV, refit, and the exported members.

Selection never sees the reported fold: inside a training part, an inner CV (leave-one-cohort-out when the part
holds two or more cohorts of `loco_min_size`, else stratified k-fold) gives every candidate setting out-of-fold
risks. From those alone we choose: the best setting of each candidate family, a clinical backbone plus a shrunk
residual (risk = z(f_clinical) + lambda * z(g_others), lambda on a grid that includes 0), and rank-free averages of
the top-k families' standardised risks. The winner (highest mean inner C-index / AUC) is refitted on the whole
training part; its parts are standardised with their inner out-of-fold spread so that weights mean the same thing
at inference.

Two rules keep the choice honest. A setting that is the null model on some inner training part (constant risk:
the start of a penalty path, where every coefficient is zero) is not a candidate: its C of 0.5 comes from tied
risks, it ranks no patient, and it used to win wherever the real settings scored below 0.5 on a heterogeneous
inner split. And the optional one-standard-error rule (`one_se`) applies only along a family's own grid, which
is ordered by complexity (penalty, leaf size, stages); across families there is no such order, so the best mean
inner score wins there (ties: the earlier option).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chimera_surv.classical import ClassicalModel, Part
from train.classical import FAMILIES, Target, design, design_rows, fit_blocks, fit_setting
from train.data import encode_fold
from train.fit import score
from train.folds import repeated_kfold

AUTO_DEFAULTS: dict[str, Any] = {
    "modalities": None,  # the modalities the whole choice may use (None: the run's); e.g. [clinical] for a baseline
    "candidates": {
        "clinical_ridge": {"family": "ridge", "modalities": ["clinical"]},
        "ridge": {"family": "ridge"},
        "coxnet": {"family": "coxnet"},
        "rsf": {"family": "rsf"},
        "gbsa": {"family": "gbsa"},
    },
    "backbone_residual": True,
    "lambdas": [0.0, 0.25, 0.5, 1.0, 2.0, 4.0],
    "ensembles": [2, 3],
    "inner_folds": 4,
    "inner_repeats": 1,
    "loco": True,
    "loco_min_size": 20,
    "one_se": 0.0,
    "fixed": None,  # an option name (e.g. "ensemble_top3") used whatever the inner scores; they are still reported
    # RNA within-sample transforms to choose among (preprocess.py WITHIN_SAMPLE) when the inner splits hold out
    # whole cohorts; the configured `preprocess.rna.within_sample` is always the first option and the only one
    # under k-fold, where a single site cannot show whether a harmonisation transfers. Off by default: offered on
    # dataOvarian1 it was taken in 1 of 4 leave-one-study-out splits and cost 0.006 there (realdata.md)
    "rna_within": [],
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
        settings["backbone_residual"], settings["ensembles"] = False, []
    return settings


def _available(settings: dict[str, Any], modalities: list[str]) -> list[str]:
    wanted = settings.get("modalities")
    return [m for m in modalities if not wanted or m in wanted]


def _modalities(cand: dict[str, Any], available: list[str]) -> list[str]:
    wanted = cand.get("modalities") or available
    return [m for m in available if m in wanted]


def _family(cand: dict[str, Any]) -> Any:
    return FAMILIES.build({"name": cand["family"], **(cand.get("params") or {})})


@dataclass
class Inner:
    """Inner out-of-fold risks of every candidate setting, the inner splits and their scores."""

    splits: list[tuple[list[int], list[int]]]
    kind: str  # "loco" or "kfold"
    oof: dict[str, np.ndarray]  # "cand#g" → risk per patient (NaN outside the inner validation parts)
    null: set[str] = field(default_factory=set)  # "cand#g" settings with constant risk on some inner training part

    def fold_scores(self, survival: bool, data: Any, risk: np.ndarray) -> list[float]:
        return [score(survival, data, va, risk[va]) for _, va in self.splits]


def inner_splits(data: Any, train: list[int], settings: dict[str, Any],
                 seed: int) -> tuple[list[tuple[list[int], list[int]]], str]:
    """Leave-one-cohort-out when the training part has >= 2 cohorts of loco_min_size, else stratified k-fold."""
    cohorts = [data.cohorts[i] for i in train]
    sizes = {c: cohorts.count(c) for c in set(cohorts)}
    big = sorted(c for c, n in sizes.items() if n >= int(settings["loco_min_size"]))
    if settings.get("loco", True) and len(big) >= 2:
        return [([i for i in train if data.cohorts[i] != c], [i for i in train if data.cohorts[i] == c])
                for c in big], "loco"
    outcome = [data.outcome[i] for i in train]
    k = int(settings["inner_folds"])
    folds = repeated_kfold(outcome, ["all"] * len(train), k, int(settings.get("inner_repeats", 1)), seed)
    return [([train[j] for j in s.train], [train[j] for j in s.test]) for s in folds], "kfold"


def with_rna_within(config: dict[str, Any], within: str | None) -> dict[str, Any]:
    """The config with `preprocess.rna.within_sample` set (None: unchanged)."""
    if within is None:
        return config
    out = copy.deepcopy(config)
    out.setdefault("preprocess", {}).setdefault("rna", {})["within_sample"] = within
    return out


def configured_within(config: dict[str, Any]) -> str:
    return str(((config.get("preprocess") or {}).get("rna") or {}).get("within_sample") or "none")


def run_inner(ctx: Any, train: list[int], settings: dict[str, Any], seed: int,
              within: str | None = None) -> Inner:
    data = ctx.data
    config = with_rna_within(ctx.config, within)
    splits, kind = inner_splits(data, train, settings, seed)
    available = _available(settings, data.modalities)
    candidates = _candidates(settings, available)
    oof: dict[str, np.ndarray] = {}
    null: set[str] = set()
    for tr, va in splits:
        enc = encode_fold(data, tr, ctx.schema, config)
        rows, present = design_rows(enc, data, data.modalities, settings["pools"])
        y = Target.of(data, tr, ctx.survival)
        for name, cand in candidates.items():
            mods = _modalities(cand, available)
            blocks = fit_blocks(rows, present, tr, mods, settings["pools"], settings["wsi_components"])
            X = design(blocks, rows, present, len(data))
            for g, predictor in enumerate(_family(cand).fit_grid(X[tr], y, seed)):
                key = f"{name}#{g}"
                oof.setdefault(key, np.full(len(data), np.nan))[va] = predictor.predict(X[va])
                if is_null(predictor, X[tr]):
                    null.add(key)
    return Inner(splits, kind, oof, null)


def is_null(predictor: Any, X: np.ndarray) -> bool:
    """Constant risk over the patients it was fitted on (all-zero coefficients, a tree ensemble without a
    split): such a setting ranks nobody."""
    risk = predictor.predict(X)
    return bool(np.ptp(risk) <= 1e-12 * max(1.0, float(np.max(np.abs(risk)))))


def best_setting(scored: list[tuple[int, float, list[float]]], null: set[int],
                 one_se: float) -> tuple[int, float, list[float]]:
    """The setting of one family's grid: non-null settings only (all of them if every one is null); the best mean
    inner score, or with `one_se` > 0 the simplest (lowest grid index: strongest penalty, largest leaf, fewest
    stages) within `one_se` standard errors of it."""
    pool = [s for s in scored if s[0] not in null] or scored
    top = max(pool, key=lambda s: (s[1] if np.isfinite(s[1]) else -np.inf, -s[0]))
    if not np.isfinite(top[1]):
        return top
    tolerance = float(one_se) * _standard_error(top[2])
    return next(s for s in sorted(pool) if np.isfinite(s[1]) and s[1] >= top[1] - tolerance - 1e-12)


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


def _z(risk: np.ndarray, idx: list[int]) -> tuple[float, float]:
    values = risk[idx]
    scale = float(np.std(values))
    return float(np.mean(values)), scale if scale > 1e-12 else 1.0


def choose(ctx: Any, inner: Inner, settings: dict[str, Any]) -> dict[str, Any]:
    """The winning specification and every option's inner scores (what the report shows)."""
    data, survival = ctx.data, ctx.survival
    candidates = _candidates(settings, _available(settings, data.modalities))
    covered = sorted({i for _, va in inner.splits for i in va})
    options: dict[str, dict[str, Any]] = {}
    best: dict[str, tuple[int, float, list[float]]] = {}
    for name, cand in candidates.items():
        scored = []
        for g, _ in enumerate(_family(cand).grid()):
            folds = inner.fold_scores(survival, data, inner.oof[f"{name}#{g}"])
            scored.append((g, _mean(folds), folds))
        null = {g for g, _, _ in scored if f"{name}#{g}" in inner.null}
        best[name] = best_setting(scored, null, settings["one_se"])
    zs = {n: _z(inner.oof[f"{n}#{g}"], covered) for n, (g, _, _) in best.items()}

    def part(n: str, weight: float) -> dict[str, Any]:
        g = best[n][0]
        return {"candidate": n, "setting": g, "weight": weight, "shift": zs[n][0], "scale": zs[n][1]}

    def combined(parts: list[dict[str, Any]]) -> np.ndarray:
        return sum(p["weight"] * (inner.oof[f"{p['candidate']}#{p['setting']}"] - p["shift"]) / p["scale"]
                   for p in parts)

    for n, (g, mean, folds) in best.items():
        if n != "residual_ridge":
            options[n] = {"parts": [part(n, 1.0)], "score": mean, "fold_scores": folds}
    if "residual_ridge" in best:
        for lam in settings["lambdas"]:
            parts = [part("clinical_ridge", 1.0)] + ([part("residual_ridge", float(lam))] if lam else [])
            folds = inner.fold_scores(survival, data, combined(parts))
            options[f"backbone_residual(lambda={lam:g})"] = {"parts": parts, "score": _mean(folds),
                                                              "fold_scores": folds}
    ranked = sorted((n for n in options if "(" not in n), key=lambda n: -options[n]["score"])
    for k in settings["ensembles"]:
        if k <= len(ranked) and k >= 2:
            parts = [part(n, 1.0 / k) for n in ranked[:k]]
            folds = inner.fold_scores(survival, data, combined(parts))
            options[f"ensemble_top{k}"] = {"parts": parts, "score": _mean(folds), "fold_scores": folds}
    # Across families: the best mean inner score (ties: the earlier option). No one-SE rule here: families have no
    # complexity order, and with 4 inner folds one SE (~0.03) spans most family differences, so the rule returned
    # whichever candidate came first.
    best_option = max(options, key=lambda n: options[n]["score"])
    if settings.get("fixed") and settings["fixed"] not in options:
        raise ValueError(f"auto.fixed: {settings['fixed']!r} is not an option here (options: {sorted(options)})")
    chosen = settings.get("fixed") or best_option
    return {"chosen": chosen, "parts": options[chosen]["parts"], "inner": inner.kind,
            "chosen_fold_scores": [round(v, 6) for v in options[chosen]["fold_scores"]],
            "n_inner_splits": len(inner.splits), "best": best_option, "rule": rule_text(settings),
            "scores": {n: round(o["score"], 4) for n, o in options.items()},
            "settings": {n: _family(candidates[n]).grid()[g] for n, (g, _, _) in best.items()},
            "null_settings": sorted(inner.null),
            "candidates": {n: candidates[n] for n in best},
            "options": {n: o["parts"] for n, o in options.items()}}


def rule_text(settings: dict[str, Any]) -> str:
    within = ("the best mean inner score" if not float(settings["one_se"]) else
              f"the simplest setting within {float(settings['one_se']):g} standard error(s) of the best")
    if settings.get("fixed"):
        return f"fixed in the config: {settings['fixed']} (the inner scores are reported, not used)"
    return (f"per family, {within} among its non-null settings; across families and combinations, the best mean "
            "inner score")


def _mean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def with_option(choice: dict[str, Any], name: str) -> dict[str, Any]:
    """The same selection record with another of its scored options as the choice (tests, ablations)."""
    return {**choice, "chosen": name, "parts": choice["options"][name]}


def _standard_error(values: list[float]) -> float:
    finite = np.asarray([v for v in values if np.isfinite(v)])
    return float(finite.std(ddof=1) / np.sqrt(len(finite))) if len(finite) > 1 else 0.0


def select(ctx: Any, arch: Any, train: list[int], seed: int) -> dict[str, Any]:
    """The choice of `choose`; with RNA and leave-one-cohort-out inner splits, also the RNA within-sample
    transform. Each of `rna_within` gets the same inner splits, and replaces the configured transform only when its
    best option wins consistently over the held-out cohorts: the mean paired gain over the inner splits exceeds one
    standard error of those gains. A harmonisation is thus used where it transferred between the training cohorts,
    not on a noise-sized difference (dataOvarian1: +0.003 inner, -0.005 on the held-out studies), and never because
    of the reported fold."""
    settings = auto_settings(arch, ctx.config)
    base = configured_within(ctx.config)
    inner = run_inner(ctx, train, settings, seed)
    choice = {**choose(ctx, inner, settings), "rna_within": base}
    if inner.kind != "loco" or "rna" not in _available(settings, ctx.data.modalities):
        return choice
    first = choice
    by_within = {base: choice["scores"][choice["chosen"]]}
    for within in settings["rna_within"]:
        if within in by_within:
            continue
        other = {**choose(ctx, run_inner(ctx, train, settings, seed, within), settings), "rna_within": within}
        by_within[within] = other["scores"][other["chosen"]]
        gain = np.asarray(other["chosen_fold_scores"]) - np.asarray(first["chosen_fold_scores"])
        if np.mean(gain) - _standard_error(list(gain)) > 0 and by_within[within] > by_within[choice["rna_within"]]:
            choice = other
    return {**choice, "rna_within_scores": {k: round(v, 4) for k, v in by_within.items()}}


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
        parts.append(Part(p["candidate"], blocks, predictor, p["weight"], p["shift"], p["scale"]))
    return ClassicalModel(choice["chosen"], parts), (enc, rows, present)


def model_rows(model: ClassicalModel, rows: dict[str, np.ndarray], idx: list[int]) -> dict[str, np.ndarray]:
    return {m: rows[m][idx] for m in model.modalities}


def predict_idx(model: ClassicalModel, rows: dict[str, np.ndarray], present: dict[str, np.ndarray],
                idx: list[int]) -> np.ndarray:
    return model.predict(model_rows(model, rows, idx), {m: present[m][idx] for m in model.modalities})


# ------------------------------------------------------------------------------------------------ protocol hooks
def run_classical_split(ctx: Any, arch_name: str, arch: Any, split: Any, seed: int) -> dict[str, Any]:
    """One CV/hold-out split: select on split.train's inner folds, refit on split.train, predict split.test."""
    train, test = list(split.train), list(split.test)
    choice = select(ctx, arch, train, seed)
    model, (_, rows, present) = refit(ctx, arch, choice, train, seed)
    risk = predict_idx(model, rows, present, test)
    data = ctx.data
    return {"arch": arch_name, "split": split.name, "repeat": split.repeat, "fold": split.fold, "test": test,
            "case_ids": [data.case_ids[i] for i in test], "risk": [float(r) for r in risk],
            "metric": score(ctx.survival, data, test, risk), "best_epoch": 0, "inner_val_metric":
            choice["scores"][choice["chosen"]], "history": [], "modalities": model.modalities,
            "n_train": len(train), "n_inner_val": 0, "config_hash": ctx.config_hash, "arch_config": arch,
            "auto": _choice_summary(choice)}


def _choice_summary(choice: dict[str, Any]) -> dict[str, Any]:
    return {k: choice.get(k) for k in ("chosen", "best", "rule", "inner", "n_inner_splits", "scores",
                                       "settings", "rna_within", "rna_within_scores")}


def classical_member(ctx: Any, arch: Any, choice: dict[str, Any], split: Any,
                     seed: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One exported member: the chosen model refitted on split.train; its held-out fold gives OOF risks."""
    train, test = list(split.train), list(split.test)
    model, (enc, rows, present) = refit(ctx, arch, choice, train, seed)
    train_risk = predict_idx(model, rows, present, train)
    oof_risk = predict_idx(model, rows, present, test)
    shift, scale = float(np.mean(train_risk)), float(np.std(train_risk)) or 1.0
    mods = model.modalities
    record = {"name": f"member{split.fold}", "split": split.name, "oof": test,
              "oof_risk": [float(r) for r in oof_risk], "risk_shift": shift, "risk_scale": scale,
              "kind": "classical", "network": model.to_dict(),
              "input_dims": {m: int(rows[m].shape[1]) if m != "wsi" else int(enc.dims["wsi"]) for m in mods},
              "modalities": mods, "preprocessing": {m: s for m, s in enc.preprocessing.items() if m in mods},
              "best_epoch": 0, "history": [], "config_hash": ctx.config_hash, "auto": _choice_summary(choice)}
    return record, model.arrays()


# ------------------------------------------------------------------------------------------------ report
def auto_report(members: list[dict[str, Any]], cv: list[dict[str, Any]]) -> dict[str, Any]:
    """The exported choice with its inner scores, and how often each option won inside the CV folds."""
    folds = [r["auto"]["chosen"] for r in cv if r.get("arch") == "model" and r.get("auto")]
    return {"exported": members[0]["auto"], "cv_choices": {c: folds.count(c) for c in sorted(set(folds))}}


def auto_markdown(section: dict[str, Any]) -> str:
    exported = section["exported"]
    inner = ("leave-one-cohort-out" if exported["inner"] == "loco" else "stratified k-fold")
    lines = ["## Automatic model choice (`model: auto`)", "",
             (f"Exported: **{exported['chosen']}**, chosen on its mean inner {inner} score over "
              f"{exported['n_inner_splits']} inner splits of the whole cohort (no reported fold is involved); rule: "
              f"{exported.get('rule')}. "
              "Settings per family: " + ", ".join(f"{k} {v}" for k, v in exported["settings"].items()) + "."), "",
             "| option | mean inner score |", "|---|---|"]
    for name, value in sorted(exported["scores"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name}{' (chosen)' if name == exported['chosen'] else ''} | {value:.4f} |")
    if exported.get("rna_within_scores"):
        tried = ", ".join(f"{k} {v:.4f}" for k, v in exported["rna_within_scores"].items())
        lines += ["", (f"RNA within-sample transform: **{exported['rna_within']}** (best inner leave-one-cohort-out "
                       f"score per transform: {tried}; another transform replaces the configured one only when its "
                       "mean paired gain over the held-out cohorts exceeds one standard error).")]
    if section.get("cv_choices"):
        counts = ", ".join(f"{k} × {v}" for k, v in section["cv_choices"].items())
        lines += ["", f"Inside the CV (each outer training part chose on its own inner splits): {counts}."]
    return "\n".join(lines) + "\n"
