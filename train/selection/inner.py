"""Inner splits of one training part and every candidate setting's inner out-of-fold risks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from train.classical import Target, TooFewWithModality, design, design_rows, fit_blocks, fit_grid
from train.data import encode_fold
from train.fit import score
from train.folds import repeated_kfold
from train.selection.networks import inner_network_risks, network_options
from train.selection.options import _available, _candidates, _family, _modalities, with_rna_within


@dataclass
class Inner:
    """Every candidate setting's risk on every inner validation part, z-scored with the mean and SD of that
    setting's risk on the inner training part (as a refitted part is scaled on its training part at export)."""

    splits: list[tuple[list[int], list[int]]]
    kinds: list[str]  # per split: "kfold" or "loco"
    val: dict[str, list[np.ndarray]]  # "cand#g" → per split, the z-scored risk of the validation patients
    null: set[str] = field(default_factory=set)  # "cand#g" settings with constant risk on some inner training part
    dropped: dict[str, str] = field(default_factory=dict)  # candidate → why it could not be fitted on some split
    # "cand#g" → per split, the z-scored risk of the `also_predict` patients: a CV split's test patients, which the
    # committee of inner models predicts (`cv_model: committee`, select.committee_risk)
    also: dict[str, list[np.ndarray]] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "kfold+loco" if "loco" in self.kinds else "kfold"

    def fold_scores(self, survival: bool, data: Any, risks: list[np.ndarray]) -> list[float]:
        return [score(survival, data, va, r) for (_, va), r in zip(self.splits, risks)]


def inner_splits(data: Any, train: list[int], settings: dict[str, Any],
                 seed: int) -> tuple[list[tuple[list[int], list[int]]], list[str]]:
    """Repeated stratified k-fold (event × cohort strata; `inner_folds` × `inner_repeats`, k never below 3), pooled
    with one leave-one-cohort-out split per cohort when >= 2 cohorts of the training part each hold
    `loco_min_size` patients and `loco_min_events` events. Two cohorts thus add two splits to the k-fold ones and
    never leave the choice on 2 splits; smaller cohorts are only strata."""
    everyone = data.outcome
    outcome = [everyone[i] for i in train]
    cohorts = [data.cohorts[i] for i in train]
    k = max(3, int(settings["inner_folds"]))
    repeats = max(1, int(settings.get("inner_repeats", 1)))
    folds = repeated_kfold(outcome, cohorts, k, repeats, seed)
    splits = [([train[j] for j in s.train], [train[j] for j in s.test]) for s in folds]
    kinds = ["kfold"] * len(splits)
    for c in loco_cohorts(data, train, settings):
        splits.append(([i for i in train if data.cohorts[i] != c], [i for i in train if data.cohorts[i] == c]))
        kinds.append("loco")
    return splits, kinds


def loco_cohorts(data: Any, train: list[int], settings: dict[str, Any]) -> list[str]:
    """The cohorts large enough to be held out (none unless at least two are)."""
    if not settings.get("loco", True):
        return []
    outcome = data.outcome
    names = sorted({data.cohorts[i] for i in train})
    big = [c for c in names
           if sum(data.cohorts[i] == c for i in train) >= int(settings["loco_min_size"])
           and sum(bool(outcome[i]) for i in train if data.cohorts[i] == c) >= int(settings["loco_min_events"])]
    return big if len(big) >= 2 else []


def run_inner(ctx: Any, train: list[int], settings: dict[str, Any], seed: int,
              within: str | None = None, also_predict: list[int] | None = None) -> Inner:
    data = ctx.data
    config = with_rna_within(ctx.config, within)
    splits, kinds = inner_splits(data, train, settings, seed)
    available = _available(settings, data.modalities)
    candidates = _candidates(settings, available)
    val: dict[str, list[np.ndarray]] = {}
    null: set[str] = set()
    dropped: dict[str, str] = {}
    also: dict[str, list[np.ndarray]] = {}
    for tr, va in splits:
        enc = encode_fold(data, tr, ctx.schema, config)
        rows, present = design_rows(enc, data, data.modalities, settings["pools"])
        y = Target.of(data, tr, ctx.survival)
        for name, cand in candidates.items():
            if name in dropped:
                continue
            mods = _modalities(cand, available)
            try:
                blocks = fit_blocks(rows, present, tr, mods, settings["pools"], settings["wsi_components"])
            except TooFewWithModality as exc:  # a sparse modality: the candidate is left out, not the run
                dropped[name] = str(exc)
                continue
            X = design(blocks, rows, present, len(data))
            for g, predictor in enumerate(fit_grid(_family(cand), X[tr], y, seed)):
                key = f"{name}#{g}"
                shift, scale = standardiser(predictor.predict(X[tr]))
                val.setdefault(key, []).append((predictor.predict(X[va]) - shift) / scale)
                if also_predict:
                    also.setdefault(key, []).append((predictor.predict(X[also_predict]) - shift) / scale)
                if is_null(predictor, X[tr]):
                    null.add(key)
    val = {k: v for k, v in val.items() if k.split("#", 1)[0] not in dropped}
    networks = network_options(settings, ctx.config, data.modalities)
    if networks:  # the same inner splits; each fit cached in the work folder (train/selection/networks.py)
        val.update(inner_network_risks(ctx, splits, networks, seed, int(settings.get("network_jobs", 1))))
    return Inner(splits, kinds, val, null, dropped, also)


def kfold_mean(per_split: list[Any], kinds: list[str]) -> np.ndarray:
    """The mean over the k-fold inner splits (leave-one-cohort-out ones left out) of per-split risks of the same
    patients: one setting's committee of inner models."""
    return np.mean([np.asarray(per_split[s], dtype=float) for s, kind in enumerate(kinds) if kind == "kfold"],
                   axis=0)


def standardiser(train_risk: np.ndarray) -> tuple[float, float]:
    """(mean, SD) of a part's risk on the patients it was fitted on; SD 1 for a constant risk."""
    scale = float(np.std(train_risk))
    return float(np.mean(train_risk)), scale if scale > 1e-12 else 1.0


def is_null(predictor: Any, X: np.ndarray) -> bool:
    """Constant risk over the patients it was fitted on (all-zero coefficients, a tree ensemble without a
    split): such a setting ranks nobody."""
    risk = predictor.predict(X)
    return bool(np.ptp(risk) <= 1e-12 * max(1.0, float(np.max(np.abs(risk)))))

