"""The rule: which option (family, backbone + residual, ensemble) a training part's inner scores choose."""

from __future__ import annotations

from typing import Any

import numpy as np

from train.selection.inner import Inner, kfold_mean, run_inner
from train.selection.networks import network_options
from train.selection.options import (
    SWITCHES,
    _available,
    _candidates,
    _family,
    auto_settings,
    configured_within,
)


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



def choose(ctx: Any, inner: Inner, settings: dict[str, Any]) -> dict[str, Any]:
    """The chosen specification and every option's inner scores (what the report shows).

    Every option is scored on the same inner splits with its parts z-scored on each inner training part, as the
    exported parts are. The default (`ensemble_equal`: every family's best setting, equal weights) is kept unless
    another option's mean paired gain over it exceeds `switch_se` standard errors (Nadeau-Bengio corrected, since
    repeated k-fold splits overlap); among the options that clear it, the best mean score wins. With ~100 patients
    the inner scores are too noisy to pick among many options by their argmax, and a diverse average is the
    stronger default; pooled leave-one-cohort-out splits let a clearly better option win across cohorts. Which
    options may replace the default at all is `switch` (default "networks": on the development cohorts every switch
    among classical options cost C-index, benchmarks/selection_rules.py).
    """
    data, survival = ctx.data, ctx.survival
    candidates = {n: c for n, c in _candidates(settings, _available(settings, data.modalities)).items()
                  if n not in inner.dropped}
    if not candidates:
        raise ValueError(f"auto: no candidate could be fitted on every inner split ({inner.dropped})")
    options: dict[str, dict[str, Any]] = {}
    best: dict[str, tuple[int, float, list[float]]] = {}
    for name, cand in candidates.items():
        scored = []
        for g, _ in enumerate(_family(cand).grid()):
            folds = inner.fold_scores(survival, data, inner.val[f"{name}#{g}"])
            scored.append((g, _mean(folds), folds))
        null = {g for g, _, _ in scored if f"{name}#{g}" in inner.null}
        best[name] = best_setting(scored, null, settings["one_se"])

    def part(n: str, weight: float) -> dict[str, Any]:  # shift/scale: set by refit on its training part
        return {"candidate": n, "setting": best[n][0], "weight": weight, "shift": 0.0, "scale": 1.0}

    def add(name: str, parts: list[dict[str, Any]]) -> None:
        risks = [sum(p["weight"] * inner.val[f"{p['candidate']}#{p['setting']}"][s] for p in parts)
                 for s in range(len(inner.splits))]
        folds = inner.fold_scores(survival, data, risks)
        options[name] = {"parts": parts, "score": _mean(folds), "fold_scores": folds}

    singles = [n for n in best if n != "residual_ridge"]
    for n in singles:
        add(n, [part(n, 1.0)])
    if "residual_ridge" in best and "clinical_ridge" in best:
        for lam in settings["lambdas"]:
            add(f"backbone_residual(lambda={lam:g})",
                [part("clinical_ridge", 1.0)] + ([part("residual_ridge", float(lam))] if lam else []))
    if settings.get("equal_ensemble") and len(singles) >= 2:
        add("ensemble_equal", [part(n, 1.0 / len(singles)) for n in singles])
    ranked = sorted(singles, key=lambda n: -options[n]["score"])
    for k in settings["ensembles"]:
        if 2 <= k <= len(ranked):
            add(f"ensemble_top{k}", [part(n, 1.0 / k) for n in ranked[:k]])
    networks = network_options(settings, ctx.config, data.modalities)
    for n in networks:  # a network is one option on its own (its parts are not mixed with classical ones)
        if f"{n}#0" in inner.val:
            options[n] = {"parts": [{"candidate": n, "setting": 0, "weight": 1.0, "shift": 0.0, "scale": 1.0}]}
            folds = inner.fold_scores(survival, data, inner.val[f"{n}#0"])
            options[n].update(score=_mean(folds), fold_scores=folds)
    best_option = max(options, key=lambda n: options[n]["score"])
    if settings.get("fixed") and settings["fixed"] not in options:
        raise ValueError(f"auto.fixed: {settings['fixed']!r} is not an option here (options: {sorted(options)})")
    default = settings.get("default") if settings.get("default") in options else best_option
    gains = {n: paired_gain(o["fold_scores"], options[default]["fold_scores"], inner) for n, o in options.items()
             if n != default}
    switchable = {"any": set(options), "networks": set(networks), "none": set()}.get(settings.get("switch", "any"))
    if switchable is None:  # e.g. `model: {name: auto, switch: ...}`, which the config's `auto:` check does not see
        raise ValueError(f"auto.switch: {settings['switch']!r} is not one of {', '.join(SWITCHES)}")
    cleared = [n for n, (mean, se) in gains.items()
               if n in switchable and mean > float(settings["switch_se"]) * se + 1e-12]
    chosen = settings.get("fixed") or max([default, *cleared], key=lambda n: options[n]["score"])
    return {"chosen": chosen, "parts": options[chosen]["parts"], "inner": inner.kind, "default": default,
            "chosen_fold_scores": [round(v, 6) for v in options[chosen]["fold_scores"]],
            "split_kinds": list(inner.kinds), "n_inner_splits": len(inner.splits), "best": best_option,
            "rule": rule_text(settings), "scores": {n: round(o["score"], 4) for n, o in options.items()},
            "gains_vs_default": {n: [round(m, 4), round(se, 4)] for n, (m, se) in gains.items()},
            "settings": {n: _family(candidates[n]).grid()[g] for n, (g, _, _) in best.items()},
            "null_settings": sorted(inner.null), "dropped_candidates": dict(inner.dropped),
            "candidates": {n: candidates[n] for n in best},
            "options": {n: o["parts"] for n, o in options.items()}, "networks": networks}


def paired_gain(scores: list[float], reference: list[float], inner: Inner) -> tuple[float, float]:
    """(mean, standard error) of the per-split score differences. The SE uses the Nadeau-Bengio (2003) correction
    sqrt(1/J + n_val/n_train), because repeated k-fold splits share patients and the naive SE is too small."""
    gain = np.asarray(scores, dtype=float) - np.asarray(reference, dtype=float)
    gain = gain[np.isfinite(gain)]
    if len(gain) < 2:
        return (float(gain.mean()) if len(gain) else 0.0), float("inf")
    ratio = float(np.mean([len(va) / max(1, len(tr)) for tr, va in inner.splits]))
    return float(gain.mean()), float(gain.std(ddof=1) * np.sqrt(1.0 / len(gain) + ratio))


def rule_text(settings: dict[str, Any]) -> str:
    within = ("the best mean inner score" if not float(settings["one_se"]) else
              f"the simplest setting within {float(settings['one_se']):g} standard error(s) of the best")
    if settings.get("fixed"):
        return f"fixed in the config: {settings['fixed']} (the inner scores are reported, not used)"
    switch = settings.get("switch", "any")
    if switch == "none":
        return f"per family, {within} among its non-null settings; always the default {settings.get('default')}"
    if switch == "networks" and not settings.get("networks"):
        return (f"per family, {within} among its non-null settings; the default {settings.get('default')} (only a "
                "network option may replace it, `switch: networks`, and none is configured; the other options' "
                "inner scores are reported, not used)")
    who = "another option's" if switch == "any" else "a network's"
    return (f"per family, {within} among its non-null settings; the default {settings.get('default')} is kept "
            f"unless {who} mean paired inner gain exceeds {float(settings['switch_se']):g} corrected "
            "standard error(s); among those that do, the best mean inner score")


def _mean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def with_option(choice: dict[str, Any], name: str) -> dict[str, Any]:
    """The same selection record with another of its scored options as the choice (tests, ablations)."""
    return {**choice, "chosen": name, "parts": choice["options"][name]}


def _standard_error(values: list[float]) -> float:
    finite = np.asarray([v for v in values if np.isfinite(v)])
    return float(finite.std(ddof=1) / np.sqrt(len(finite))) if len(finite) > 1 else 0.0


def committee_risk(inner: Inner, parts: list[dict[str, Any]]) -> list[float]:
    """The option's risk on `also_predict` patients by a committee: each part's models from the inner k-fold
    training parts (each z-scored on its own), averaged, then weighted as scored."""
    risk = sum(p["weight"] * kfold_mean(inner.also[f"{p['candidate']}#{p['setting']}"], inner.kinds) for p in parts)
    return [float(r) for r in np.asarray(risk, dtype=float)]


def select(ctx: Any, arch: Any, train: list[int], seed: int,
           also_predict: list[int] | None = None) -> dict[str, Any]:
    """The choice of `choose`; with RNA and leave-one-cohort-out inner splits, also the RNA within-sample
    transform. Each of `rna_within` gets the same inner splits, and replaces the configured transform only when its
    best option wins consistently over the held-out cohorts: the mean paired gain over the leave-one-cohort-out
    splits exceeds one
    standard error of those gains. A harmonisation is thus used where it transferred between the training cohorts,
    not on a noise-sized difference (dataOvarian1: +0.003 inner, -0.005 on the held-out studies), and never because
    of the reported fold. With `also_predict` (a CV split's test patients), a classical choice also carries
    `committee_risk` for them (committee_risk; `cv_model: committee`)."""
    settings = auto_settings(arch, ctx.config)
    base = configured_within(ctx.config)
    inner = run_inner(ctx, train, settings, seed, also_predict=also_predict)
    choice = _with_committee({**choose(ctx, inner, settings), "rna_within": base}, inner, also_predict)
    if "loco" not in inner.kinds or "rna" not in _available(settings, ctx.data.modalities):
        return choice
    first = choice
    by_within = {base: choice["scores"][choice["chosen"]]}
    for within in settings["rna_within"]:
        if within in by_within:
            continue
        other_inner = run_inner(ctx, train, settings, seed, within, also_predict)
        other = _with_committee({**choose(ctx, other_inner, settings), "rna_within": within}, other_inner,
                                also_predict)
        by_within[within] = other["scores"][other["chosen"]]
        loco = np.asarray(inner.kinds) == "loco"
        gain = (np.asarray(other["chosen_fold_scores"]) - np.asarray(first["chosen_fold_scores"]))[loco]
        if np.mean(gain) - _standard_error(list(gain)) > 0 and by_within[within] > by_within[choice["rna_within"]]:
            choice = other
    return {**choice, "rna_within_scores": {k: round(v, 4) for k, v in by_within.items()}}


def _with_committee(choice: dict[str, Any], inner: Inner, also_predict: list[int] | None) -> dict[str, Any]:
    if not also_predict or any(f"{p['candidate']}#{p['setting']}" not in inner.also for p in choice["parts"]):
        return choice  # no patients to predict, or a network (its inner fits predict no other patients)
    return {**choice, "committee_risk": committee_risk(inner, choice["parts"])}
