"""Issue 23, development only: compare `auto` selection rules offline on exactly the real-data benchmark's folds.

`--collect` fits, for each development cohort and each CV (and cohort-held-out) split of
benchmarks/realdata_confirm.py, every candidate setting of `auto` (plus any `EXTRA` candidates) on the split's inner
splits AND on the whole outer training part, and saves every setting's z-scored inner validation risks and outer
test risks (runs/selection_rules/<cohort>.json; large, not committed). A rule is a function of the inner risks
only; its outer C-index then follows without refitting, because an auto option is a weighted sum of z-scored parts.
`--evaluate` applies each rule in RULES to the saved risks and compares it with the anchors' per-split C-indices
stored by realdata_confirm (the same folds), and writes benchmarks/results/selection_rules.json. The shipped rule (train/selection/ with its defaults) must reproduce
the stored per-split auto C-index of a run made with it exactly: the evaluation checks it, so a rule's figure here
is what `auto` under that rule would report. `current` is issue23-v1 (`switch: any`), the rule when the rules were
compared; `always_equal` is what issue23-v2 (`switch: networks`) does on cohorts without networks.

`--collect COHORTS --rna VARIANT` collects the same under an RNA preprocessing variant (RNA_VARIANTS, default
candidates only, into runs/selection_rules/rna_<variant>/); `--evaluate-rna` scores each variant under the shipped
rule against the stored run (top_var 500) and applies RNA_ADOPTION_RULE (benchmarks/results/rna_preprocessing.json).

Round 2 (ROUND2, after issue23-v2 shipped): equal ensembles over other tree families, among them Extra Survival
Trees (`est`); ROUND2_ADOPTION_RULE, written before they ran, compares them with the shipped `always_equal`.

Round 3 (ROUND3): the same equal ensemble predicted by a committee of the inner k-fold models (adopted: issue23-v3).
Round 4 (ROUND4, after the v3 confirmation figures): committee variants with more tree members or a switch/shrinkage
rule; ROUND4_ADOPTION_RULE, written before they ran, compares them with the shipped `committee_equal` (none adopted).

Never run on the confirmation group: rules are chosen here, then judged once by realdata_confirm.py.
A benchmark tool, not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import realdata
import realdata_confirm

OUT = ROOT / "runs" / "selection_rules"
RESULT = ROOT / "benchmarks" / "results" / "selection_rules.json"
# variants offered to the rules besides the default candidates (anchor-like settings of the two tree families)
EXTRA: dict[str, dict[str, Any]] = {
    "rsf_leaf5": {"family": "rsf", "params": {"min_samples_leaf": [5]}},
    "gbsa_deep": {"family": "gbsa", "params": {"stages": [100], "max_depth": 3, "subsample": 1.0,
                                               "min_samples_leaf": 1, "max_features": None}},
    "est": {"family": "rsf", "params": {"extra": True}},  # extremely randomised survival trees, leaf 8 (round 2)
}
ANCHOR_LIKE = ("rsf_leaf5", "gbsa_deep")  # the two extras of the first round (the "six families")


# RNA preprocessing variants (`--rna`), each collected with the default candidates only, into OUT/rna_<variant>/;
# the benchmark's own setting is top_var 500 (realdata_confirm.py), the one the stored runs used
RNA_VARIANTS: dict[str, dict[str, Any]] = {
    "all_genes": {"top_var": None},  # the product's default (preprocess.rna.top_var: null)
    "top2000": {"top_var": 2000},
    "top2000_pca128": {"top_var": 2000, "pca": 128},  # train/configs/task3.yaml's setting
}


def collect(name: str, rna: str | None = None) -> Path:
    """Every candidate setting's inner validation risks and outer test risks on each benchmark split of `name`
    (with `rna`: under that RNA preprocessing variant, default candidates only)."""
    from train.__main__ import Run
    from train.classical import Target, design, design_rows, fit_blocks
    from train.config import load_config
    from train.data import encode_fold
    from train.folds import cohort_holdout
    from train.protocol import _split_seed, cv_splits
    from train.selection.inner import is_null, run_inner, standardiser
    from train.selection.options import _available, _candidates, _family, _modalities, auto_settings

    spec = realdata_confirm.COHORTS[name]
    realdata.COHORTS[name] = {**spec, "lean": True, **({"rna": RNA_VARIANTS[rna]} if rna else {})}
    df = realdata.load(name)
    out = OUT / f"rna_{rna}" if rna else OUT
    folder = out / name
    layout = realdata.write_layout(name, df, folder)
    config = load_config(realdata.write_config(name, folder, layout, spec["repeats"]))
    ctx = Run(config).context()
    data = ctx.data
    settings = auto_settings("auto", config)
    extra = {} if rna else EXTRA
    settings["candidates"] = {**settings["candidates"], **extra}
    jobs = [(s, 0, "cv") for s in cv_splits(ctx)]
    if config["protocol"].get("cohort_holdout"):
        jobs += [(s, 7, "holdout") for s in cohort_holdout(data.cohorts)]
    splits = []
    for split, salt, kind in jobs:
        started = time.perf_counter()
        train, test = list(split.train), list(split.test)
        seed = _split_seed(config, split, salt)
        inner = run_inner(ctx, train, settings, seed, also_predict=test)
        enc = encode_fold(data, train, ctx.schema, config)
        rows, present = design_rows(enc, data, data.modalities, settings["pools"])
        y = Target.of(data, train, True)
        available = _available(settings, data.modalities)
        outer, outer_null = {}, []
        for cname, cand in _candidates(settings, available).items():
            if cname in inner.dropped:
                continue
            blocks = fit_blocks(rows, present, train, _modalities(cand, available), settings["pools"],
                                settings["wsi_components"])
            X = design(blocks, rows, present, len(data))
            for g, predictor in enumerate(_family(cand).fit_grid(X[train], y, seed)):
                shift, scale = standardiser(predictor.predict(X[train]))
                outer[f"{cname}#{g}"] = ((predictor.predict(X[test]) - shift) / scale).tolist()
                if is_null(predictor, X[train]):
                    outer_null.append(f"{cname}#{g}")
        splits.append({"kind": kind, "name": split.name, "train": train, "test": test,
                       "inner_splits": inner.splits, "inner_kinds": inner.kinds,
                       "inner_val": {k: [v.tolist() for v in vs] for k, vs in inner.val.items()},
                       "inner_null": sorted(inner.null), "dropped": inner.dropped, "outer": outer,
                       "outer_null": outer_null,
                       "inner_test": {k: [v.tolist() for v in vs] for k, vs in inner.also.items()},
                       "seconds": round(time.perf_counter() - started, 1)})
        print(f"{name} {kind} {split.name}: {splits[-1]['seconds']} s", flush=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps({"name": name, "time": data.time.tolist(), "event": data.event.tolist(),
                                "modalities": list(data.modalities), "extra": extra, "rna": rna,
                                "splits": splits}))
    return path


# ------------------------------------------------------------------------------------------------ offline rules
def load(name: str) -> dict[str, Any]:
    return json.loads((OUT / f"{name}.json").read_text())


def c_index(saved: dict[str, Any], idx: list[int], risk: np.ndarray) -> float:
    from chimera_surv.survival.metrics import harrell_c

    return harrell_c(np.asarray(saved["event"], bool)[idx], np.asarray(saved["time"], float)[idx], risk)


def current_rule(saved: dict[str, Any], split: dict[str, Any], **overrides: Any) -> list[tuple[str, float]]:
    """auto's rule as shipped (train/selection/select.py `choose`) on the saved inner risks; `overrides` change
    its settings (e.g. switch, switch_se, candidates)."""
    return _parts(_choice(saved, split, **overrides)["parts"])


def _parts(parts: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """An option's parts as (setting key, weight)."""
    return [(f"{p['candidate']}#{p['setting']}", float(p["weight"])) for p in parts]


def _choice(saved: dict[str, Any], split: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    from train.selection.inner import Inner
    from train.selection.options import AUTO_DEFAULTS
    from train.selection.select import choose

    settings = {**json.loads(json.dumps(AUTO_DEFAULTS)), **overrides}
    names = set(settings["candidates"]) | {"residual_ridge"}
    val = {k: [np.asarray(v) for v in vs] for k, vs in split["inner_val"].items() if k.split("#")[0] in names}
    inner = Inner([tuple(s) for s in split["inner_splits"]], split["inner_kinds"], val,
                  {k for k in split["inner_null"] if k in val},
                  {k: v for k, v in split["dropped"].items() if k in names})
    data = SimpleNamespace(time=np.asarray(saved["time"], float), event=np.asarray(saved["event"], float),
                           label=np.zeros(len(saved["time"])), modalities=saved["modalities"])
    ctx = SimpleNamespace(data=data, survival=True, config={})
    return choose(ctx, inner, settings)


def outer_c(saved: dict[str, Any], split: dict[str, Any], parts: list[tuple[str, float]]) -> float:
    risk = sum(w * _outer_risk(split, k) for k, w in parts)
    return c_index(saved, split["test"], np.asarray(risk, float))


COMMITTEE = "committee:"  # a part key prefix: that setting's inner k-fold models averaged, instead of its refit


def _outer_risk(split: dict[str, Any], key: str) -> np.ndarray:
    """A setting's z-scored risk on the outer test part: its refit on the whole training part, or (`committee:`)
    the mean of its models fitted on the k-fold inner training parts (each z-scored on its own training part),
    the way a bundle averages members fitted on CV training parts."""
    if not key.startswith(COMMITTEE):
        return np.asarray(split["outer"][key])
    from train.selection.inner import kfold_mean

    return kfold_mean(split["inner_test"][key[len(COMMITTEE):]], split["inner_kinds"])


DEFAULT_FAMILIES = ("clinical_ridge", "coxnet", "rsf", "gbsa")


def _inner(saved: dict[str, Any], split: dict[str, Any], parts: list[tuple[str, float]]) -> list[float]:
    """The inner fold C-indices of a weighted sum of parts (each part z-scored on its inner training part)."""
    out = []
    for s, (_, va) in enumerate(split["inner_splits"]):
        risk = sum(w * np.asarray(split["inner_val"][k][s]) for k, w in parts)
        out.append(c_index(saved, va, np.asarray(risk, float)))
    return out


def _family_settings(split: dict[str, Any], family: str) -> list[str]:
    keys = sorted((k for k in split["inner_val"] if k.split("#")[0] == family), key=lambda k: int(k.split("#")[1]))
    usable = [k for k in keys if k not in split["inner_null"]]
    return usable or keys


def _best_setting(saved: dict[str, Any], split: dict[str, Any], family: str) -> str:
    """The family's setting `choose` takes (select.best_setting, one_se 0)."""
    from train.selection.select import best_setting

    keys = _family_settings(split, family)
    scored = [(int(k.split("#")[1]), float(np.nanmean(f)), f) for k in keys if (f := _inner(saved, split, [(k, 1.0)]))]
    return f"{family}#{best_setting(scored, set(), 0.0)[0]}"


def _families(split: dict[str, Any], wanted: tuple[str, ...] = DEFAULT_FAMILIES) -> list[str]:
    return [f for f in wanted if f not in split["dropped"] and any(k.split("#")[0] == f for k in split["inner_val"])]


def _gain_se(split: dict[str, Any], a: list[float], b: list[float]) -> tuple[float, float]:
    """Nadeau-Bengio corrected (mean, SE) of the paired inner gain a - b (select.paired_gain)."""
    from train.selection.select import paired_gain

    return paired_gain(a, b, SimpleNamespace(splits=split["inner_splits"]))


def always_equal(saved: dict[str, Any], split: dict[str, Any], wanted: tuple[str, ...] = DEFAULT_FAMILIES):
    fams = _families(split, wanted)
    return [(_best_setting(saved, split, f), 1.0 / len(fams)) for f in fams]


def equal_grid_mean(saved: dict[str, Any], split: dict[str, Any]):
    """No setting is chosen: each family is the mean of its non-null settings."""
    fams = _families(split)
    return [(k, 1.0 / len(fams) / len(_family_settings(split, f))) for f in fams for k in _family_settings(split, f)]


def shrink_to_best(saved: dict[str, Any], split: dict[str, Any]):
    """Positive-part James-Stein between the equal ensemble and the best single family: the weight moves toward
    the best family by max(0, 1 - 1/t^2), t its corrected paired inner gain over the equal ensemble in SEs."""
    equal = always_equal(saved, split)
    base = _inner(saved, split, equal)
    best, t = None, 0.0
    for k, _ in equal:
        mean, se = _gain_se(split, _inner(saved, split, [(k, 1.0)]), base)
        if se > 0 and mean / se > t:
            best, t = k, mean / se
    lam = max(0.0, 1.0 - 1.0 / t ** 2) if t > 1 else 0.0
    return [(k, (1 - lam) * w + (lam if k == best else 0.0)) for k, w in equal]


def drop_losers(saved: dict[str, Any], split: dict[str, Any]):
    """The equal ensemble without the families whose corrected paired inner gain over it is below -1 SE."""
    equal = always_equal(saved, split)
    base = _inner(saved, split, equal)
    keep = []
    for k, _ in equal:
        mean, se = _gain_se(split, _inner(saved, split, [(k, 1.0)]), base)
        if not mean < -se:
            keep.append(k)
    keep = keep or [k for k, _ in equal]
    return [(k, 1.0 / len(keep)) for k in keep]


def score_weighted(saved: dict[str, Any], split: dict[str, Any], power: float = 2.0):
    """Weights proportional to (inner C - 0.5)^power over the families' best settings (equal if none is above)."""
    equal = always_equal(saved, split)
    lift = np.array([max(0.0, np.nanmean(_inner(saved, split, [(k, 1.0)])) - 0.5) ** power for k, _ in equal])
    if lift.sum() <= 0:
        return equal
    return [(k, float(w)) for (k, _), w in zip(equal, lift / lift.sum())]


def _with_candidates(names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    from train.selection.options import AUTO_DEFAULTS

    every = {**AUTO_DEFAULTS["candidates"], **EXTRA}
    return {n: every[n] for n in names}


def backbone_may_switch(saved: dict[str, Any], split: dict[str, Any]):
    """issue23-v1's switch rule restricted to the backbone + residual options (evaluated after v2 was adopted)."""
    settings = {"switch": "any"}
    choice = _choice(saved, split, **settings)
    cleared = [n for n, (m, se) in choice["gains_vs_default"].items()
               if n.startswith("backbone_residual") and m > se + 1e-12]
    name = max([choice["default"], *cleared], key=lambda n: choice["scores"][n])
    return _parts(choice["options"][name])


def shipped(saved: dict[str, Any], split: dict[str, Any], version: str) -> list[tuple[str, float]]:
    """The parts auto under AUTO_DEFAULTS predicts with, as run `version` of realdata_confirm predicted: by the
    committee of inner models since issue23-v3 (`cv_model: committee`), by the refit before."""
    parts = current_rule(saved, split)
    committee = not version.startswith(("issue23-v1", "issue23-v2"))
    return [(f"{COMMITTEE}{k}", w) for k, w in parts] if committee else parts


def _committee(parts: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """The same parts, each predicted by its inner k-fold models averaged (`cv_model: committee`)."""
    return [(f"{COMMITTEE}{k}", w) for k, w in parts]


def committee_equal(saved: dict[str, Any], split: dict[str, Any], refit_share: float = 0.0):
    """The equal ensemble, each family's chosen setting averaged over its inner k-fold models (`refit_share` of
    its weight stays on the refit)."""
    parts = []
    for k, w in always_equal(saved, split):
        parts += [(f"{COMMITTEE}{k}", w * (1 - refit_share))] + ([(k, w * refit_share)] if refit_share else [])
    return parts


# every `current_rule` variant names `switch: any`, the issue23-v1 rule they were compared under
RULES: dict[str, Any] = {
    "current": lambda saved, split: current_rule(saved, split, switch="any"),  # issue23-v1 (the rule then shipped)
    "always_equal": always_equal,
    "switch_se_0.5": lambda saved, split: current_rule(saved, split, switch="any", switch_se=0.5),
    "switch_se_2": lambda saved, split: current_rule(saved, split, switch="any", switch_se=2.0),
    "equal_grid_mean": equal_grid_mean,
    "shrink_to_best": shrink_to_best,
    "drop_losers": drop_losers,
    "score_weighted_2": score_weighted,
    "current_six_families": lambda saved, split: current_rule(
        saved, split, switch="any", candidates=_with_candidates((*DEFAULT_FAMILIES, *ANCHOR_LIKE))),
    "current_anchor_like_trees": lambda saved, split: current_rule(
        saved, split, switch="any", candidates=_with_candidates(("clinical_ridge", "coxnet", "rsf_leaf5", "gbsa_deep"))),
    "equal_six_families": lambda saved, split: always_equal(saved, split, (*DEFAULT_FAMILIES, *ANCHOR_LIKE)),
    "backbone_may_switch": backbone_may_switch,
    # round 2 (after issue23-v2): the equal ensemble over other tree families, judged by ROUND2_ADOPTION_RULE
    "equal_est_added": lambda saved, split: always_equal(saved, split, (*DEFAULT_FAMILIES, "est")),
    "equal_est_for_rsf": lambda saved, split: always_equal(saved, split, ("clinical_ridge", "coxnet", "est", "gbsa")),
    "equal_anchor_like_trees": lambda saved, split: always_equal(
        saved, split, ("clinical_ridge", "coxnet", "rsf_leaf5", "gbsa_deep")),
    # round 3 (after round 2): the same equal ensemble, predicted by a committee of the inner k-fold models
    "committee_equal": committee_equal,
    "committee_half_refit": lambda saved, split: committee_equal(saved, split, 0.5),
    # round 4 (after issue23-v3's confirmation figures had been seen): the committee with more tree members, or
    # allowed to leave the equal ensemble on strong inner evidence; judged by ROUND4_ADOPTION_RULE
    "committee_six_families": lambda saved, split: _committee(always_equal(saved, split, (*DEFAULT_FAMILIES,
                                                                                          *ANCHOR_LIKE))),
    "committee_est_added": lambda saved, split: _committee(always_equal(saved, split, (*DEFAULT_FAMILIES, "est"))),
    "committee_switch_se_2": lambda saved, split: _committee(current_rule(saved, split, switch="any",
                                                                          switch_se=2.0)),
    "committee_shrink_to_best": lambda saved, split: _committee(shrink_to_best(saved, split)),
}
# Written before any rule above was evaluated: the rule adopted is the one with the highest mean (auto - best
# anchor) over the development cohorts' CV, among those whose count of cohorts below -0.005 is not above the
# current rule's; it replaces `current` only if it gains >= 0.002 on that mean. Cohort-held-out (dataOvarian1, one
# development cohort) is reported, not used to choose.
LATER = {"backbone_may_switch": "evaluated after issue23-v2 (always_equal) had been adopted: +0.0008 over it on the "
                                "development CV mean, under the 0.002 threshold, so not adopted"}
# Written before any round-2 rule was evaluated (2026-12-04), against the shipped rule rather than issue23-v1
ROUND2 = ("equal_est_added", "equal_est_for_rsf", "equal_anchor_like_trees")
ROUND2_ADOPTION_RULE = ("round 2: highest development CV mean(auto - best anchor) among ROUND2 rules with no more "
                        "cohorts below -0.005 than `always_equal` (issue23-v2, shipped); adopted only if it gains "
                        ">= 0.002 over `always_equal`; then judged once on the confirmation cohorts by "
                        "realdata_confirm.py, before and after recorded")
# Written before any round-3 rule was evaluated (2026-12-04): the shipped bundle already averages members fitted
# on CV training parts, while a CV fold's `auto` is one refit; does a committee of inner models rank better?
ROUND3 = ("committee_equal", "committee_half_refit")
SHIPPED = ("committee_equal (issue23-v3: the selection of always_equal, issue23-v2's `switch: networks`, with "
           "`cv_model: committee`; adopted in round 3)")
ROUND3_ADOPTION_RULE = ("round 3: as round 2, among ROUND3 rules against `always_equal`: adopted only with a gain "
                        ">= 0.002 on the development CV mean and no more cohorts below -0.005")
# Written before any round-4 rule was evaluated (2026-12-04, session 33), after the issue23-v3 confirmation
# figures (mean -0.0014, 11 of 16 within 0.005) had been seen: a 4th look at the confirmation group if one is adopted
ROUND4 = ("committee_six_families", "committee_est_added", "committee_switch_se_2", "committee_shrink_to_best")
ROUND4_ADOPTION_RULE = ("round 4: as round 3, among ROUND4 rules against the shipped `committee_equal`: adopted "
                        "only with a gain >= 0.002 on the development CV mean and no more cohorts below -0.005")
ADOPTION_RULE = ("highest development CV mean(auto - best anchor) among rules with no more cohorts below -0.005 "
                 "than `current`; adopted only if it gains >= 0.002 over `current`")


def evaluate(names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        saved = load(name)
        stored = json.loads(realdata_confirm.result_path(name).read_text())
        row: dict[str, Any] = {}
        for kind in ("cv", "holdout"):
            splits = [s for s in saved["splits"] if s["kind"] == kind]
            if not splits or kind not in stored:
                continue
            per_split = stored[kind]["splits"]
            anchors = {a: float(np.mean([per_split[s["name"]][a] for s in splits])) for a in stored[kind]["anchors"]}
            best = max(anchors.values())
            rules = {}
            for rule, fn in RULES.items():
                cs = [outer_c(saved, s, fn(saved, s)) for s in splits]
                rules[rule] = round(float(np.mean(cs)) - best, 4)
            check = [abs(outer_c(saved, s, shipped(saved, s, stored.get("rule_version", "")))
                         - per_split[s["name"]]["auto"]) for s in splits]
            row[kind] = {"minus_best_anchor": rules, "best_anchor": round(best, 4),
                         "stored_rule": stored.get("rule_version", "")[:11],
                         "shipped_rule_reproduces_stored": bool(max(check) < 1e-9)}
        out[name] = row
        print(name, json.dumps(row), flush=True)
    return out


# Written before any RNA variant was evaluated (issue 23, after issue23-v2): the benchmark's RNA setting for cohorts
# with more than 500 genes (top_var 500) is replaced by the variant with the highest mean (auto - best anchor) over
# the development cohorts' CV, among the variants with no more cohorts below -0.005 than top_var 500, and only if
# it gains >= 0.002 over top_var 500 on that mean; `auto` is the shipped rule (issue23-v2) in every variant.
RNA_ADOPTION_RULE = ("highest development CV mean(auto - best anchor) over the gene-expression cohorts with > 500 "
                     "genes, among variants with no more cohorts below -0.005 than top_var 500; adopted only if it "
                     "gains >= 0.002 over top_var 500")
RNA_RESULT = ROOT / "benchmarks" / "results" / "rna_preprocessing.json"


def evaluate_rna() -> dict[str, Any]:
    """Each collected RNA variant under the shipped rule (the equal ensemble), per development cohort, against the
    stored run (top_var 500, the same rule and folds) and the stored anchors; plus each family alone at its
    inner-best setting, to show which family the genes move."""
    cohorts: dict[str, Any] = {}
    for folder in sorted(OUT.glob("rna_*")):
        variant = folder.name[len("rna_"):]
        for path in sorted(folder.glob("*.json")):
            saved = json.loads(path.read_text())
            stored = json.loads(realdata_confirm.result_path(saved["name"]).read_text())
            splits = [s for s in saved["splits"] if s["kind"] == "cv"]
            per_split = stored["cv"]["splits"]
            assert {s["name"] for s in splits} == set(per_split), f"{saved['name']}: other splits than the stored run"
            anchors = {a: float(np.mean([per_split[s["name"]][a] for s in splits])) for a in stored["cv"]["anchors"]}
            best = max(anchors.values())
            row = cohorts.setdefault(saved["name"], {
                "n": stored["n"], "n_genes": stored["n_genes"], "best_anchor": round(best, 4),
                "anchor_average": round(anchors["anchor_average"], 4),
                "top500": {"auto_minus_best_anchor": round(float(np.mean([per_split[s["name"]]["auto"]
                                                                           for s in splits])) - best, 4)}})
            auto = [outer_c(saved, s, always_equal(saved, s)) for s in splits]
            families = {f: round(float(np.mean([outer_c(saved, s, [(_best_setting(saved, s, f), 1.0)])
                                                for s in splits if f in _families(s)])), 4)
                        for f in DEFAULT_FAMILIES if any(f in _families(s) for s in splits)}
            row[variant] = {"auto_minus_best_anchor": round(float(np.mean(auto)) - best, 4), "families_c": families,
                            "seconds": round(sum(s["seconds"] for s in splits), 1)}
            print(saved["name"], variant, json.dumps(row[variant]), flush=True)
    variants = sorted({v for row in cohorts.values() for v in row if isinstance(row[v], dict)})
    complete = {n: r for n, r in cohorts.items() if all(v in r for v in variants)}
    summary = {v: {"mean": round(float(np.mean([r[v]["auto_minus_best_anchor"] for r in complete.values()])), 4),
                   "worst": round(float(min(r[v]["auto_minus_best_anchor"] for r in complete.values())), 4),
                   "below_0.005": int(sum(r[v]["auto_minus_best_anchor"] < -0.005 for r in complete.values())),
                   "n": len(complete)} for v in variants} if complete else {}
    adopted = adopt(summary, "top500", [v for v in summary if v != "top500"])
    doc = {"adoption_rule": RNA_ADOPTION_RULE, "variants": {"top500": {"top_var": 500}, **RNA_VARIANTS},
           "summary": summary, "adopted": adopted, "cohorts": cohorts}
    RNA_RESULT.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(summary, indent=1), "\nadopted:", adopted)
    return doc


def adopt(summary: dict[str, dict[str, Any]], baseline: str, options: list[str], gain: float = 0.002) -> str:
    """The pre-written adoption rules' shared decision: the option with the highest mean among those with no more
    cohorts below -0.005 than `baseline`, if it gains >= `gain` over the baseline's mean; else the baseline."""
    eligible = [o for o in options if summary[o]["below_0.005"] <= summary[baseline]["below_0.005"]]
    best = max(eligible, key=lambda o: summary[o]["mean"]) if eligible else None
    return best if best and summary[best]["mean"] - summary[baseline]["mean"] >= gain else baseline


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Per rule and kind: mean, worst and count below -0.005 of (auto - best anchor) over the cohorts."""
    out: dict[str, Any] = {}
    for kind in ("cv", "holdout"):
        rows = [r[kind]["minus_best_anchor"] for r in result.values() if kind in r]
        if rows:
            out[kind] = {rule: {"mean": round(float(np.mean([r[rule] for r in rows])), 4),
                                "worst": round(float(min(r[rule] for r in rows)), 4),
                                "below_0.005": int(sum(r[rule] < -0.005 for r in rows)), "n": len(rows)}
                         for rule in RULES}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--collect", nargs="*", help="development cohorts to collect (none named: all)")
    parser.add_argument("--rna", choices=sorted(RNA_VARIANTS), help="collect under this RNA preprocessing variant")
    parser.add_argument("--evaluate", action="store_true")
    parser.add_argument("--evaluate-rna", action="store_true", help="compare the collected RNA variants")
    args = parser.parse_args(argv)
    development = sorted(n for n in realdata_confirm.COHORTS if realdata.group(n) == "development")
    if args.collect is not None:
        for name in args.collect or development:
            if realdata.group(name) != "development":
                raise SystemExit(f"{name} is a confirmation cohort: rules are developed on development only")
            collect(name, args.rna)
    if args.evaluate_rna:
        evaluate_rna()
    if args.evaluate:
        names = [n for n in development if (OUT / f"{n}.json").is_file()]
        result = evaluate(names)
        summary = summarise(result)
        print(json.dumps(summary, indent=1))
        round2 = adopt(summary["cv"], "always_equal", list(ROUND2))
        round3 = adopt(summary["cv"], "always_equal", list(ROUND3))
        round4 = adopt(summary["cv"], "committee_equal", list(ROUND4))
        print("round 2 adopts:", round2, "; round 3 adopts:", round3, "; round 4 adopts:", round4)
        doc = {"adoption_rule": ADOPTION_RULE, "adopted": SHIPPED,
               "added_later": LATER,
               "round2": {"adoption_rule": ROUND2_ADOPTION_RULE, "rules": list(ROUND2), "adopted": round2},
               "round3": {"adoption_rule": ROUND3_ADOPTION_RULE, "rules": list(ROUND3), "adopted": round3},
               "round4": {"adoption_rule": ROUND4_ADOPTION_RULE, "rules": list(ROUND4), "adopted": round4},
               "summary": summary, "cohorts": result}
        RESULT.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
