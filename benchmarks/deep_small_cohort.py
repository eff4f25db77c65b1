"""Small-cohort deep training: old early stopping vs inner-CV epochs + refit, seed ensembles and weight averaging.

Writes benchmarks/results/deep_small_cohort.{json,md}. Run: ``.venv/bin/python benchmarks/deep_small_cohort.py``
(``--quick`` for a smoke run). Every cohort is written into the project's training layout (`<id>/<id>_CD.json` with
a schema JSON, plus `_RNA.json` for the synthetic one), loaded by `python -m train`'s own `Run`, and every variant is
trained by `train.protocol.run_split` on the SAME repeated stratified folds; the reported fold is only predicted.
Anchor in the same run: scikit-survival CoxPH (ridge alpha 0.01) on the same fold-fitted encoding of the same inputs.
Cohorts: scikit-survival's bundled veterans lung cancer (137 patients: the small-cohort regime of CHIMERA's 95-176
patients) and a synthetic Task-3 cohort (150, clinical + 40 genes); `--extra` adds a 200-patient subsample of GBSG2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train.__main__ import Run
from train.config import config_hash, load_config
from train.data import encode_fold
from train.fit import score
from train.protocol import cv_splits, run_split

# Left out of the default run for time on 2 busy cores (--extra adds them and the GBSG2 subsample).
EXTRA_VARIANTS = {"inner_cv + ema": {"stopping": "inner_cv", "seeds": 1, "average": "ema"},
                  "inner_cv + 3 seeds": {"stopping": "inner_cv", "seeds": 3, "average": "none"}}
VARIANTS = {
    "holdout (old early stopping)": {"stopping": "holdout", "seeds": 1, "average": "none"},
    "holdout + 3 seeds": {"stopping": "holdout", "seeds": 3, "average": "none"},
    "inner_cv": {"stopping": "inner_cv", "seeds": 1, "average": "none"},
    "inner_cv + swa": {"stopping": "inner_cv", "seeds": 1, "average": "swa"},
    "inner_cv + 3 seeds + swa": {"stopping": "inner_cv", "seeds": 3, "average": "swa"},
}
BASELINE = "holdout (old early stopping)"


def _write_tabular(root: Path, name: str, x, y, time_scale: float, n: int | None, seed: int) -> Path:
    """A scikit-survival frame → `<root>/data/<id>/<id>_CD.json` + schema.json (categoricals from the frame)."""
    rng = np.random.default_rng(seed)
    rows = np.arange(len(x)) if n is None or n >= len(x) else np.sort(rng.choice(len(x), n, replace=False))
    event_key, time_key = y.dtype.names
    features = {}
    for col in x.columns:
        if str(x[col].dtype) in ("category", "object", "bool"):
            features[col] = {"type": "categorical", "categories": sorted(str(c) for c in x[col].dropna().unique())}
        else:
            features[col] = {"type": "numeric", "range": [float(x[col].min()) - 1, float(x[col].max()) + 1]}
    schema = {"name": name, "features": features,
              "labels": {"time": "time_months", "event": "event", "event_true": ["1"]}}
    cohort = root / name
    (cohort / "data").mkdir(parents=True)
    (root / f"{name}_schema.json").write_text(json.dumps(schema))
    for k, i in enumerate(rows):
        case = f"P{k:04d}"
        doc = {c: (str(v) if features[c]["type"] == "categorical" else float(v)) for c, v in x.iloc[i].items()}
        doc.update(time_months=float(y[time_key][i]) * time_scale, event=int(bool(y[event_key][i])))
        (cohort / "data" / case).mkdir()
        (cohort / "data" / case / f"{case}_CD.json").write_text(json.dumps(doc))
    return cohort


def cohorts(root: Path, quick: bool, extra: bool = False) -> dict[str, dict]:
    """name → config entries (schema, cohort root, modalities, genes)."""
    from sksurv.datasets import load_gbsg2, load_veterans_lung_cancer

    from chimera_surv import synthetic
    from chimera_surv.make_cases import write_training_cohort

    out = {}
    x, y = load_veterans_lung_cancer()
    out["veterans (137, clinical)"] = {"cohort": {"root": str(_write_tabular(root, "veterans", x, y, 1 / 30.44,
                                                                             None, 0))},
                                       "schema": str(root / "veterans_schema.json"), "modalities": ["clinical"]}
    if extra:
        x, y = load_gbsg2()
        out["gbsg2 n=200 (clinical)"] = {
            "cohort": {"root": str(_write_tabular(root, "gbsg2", x, y, 1 / 30.44, 200, 0))},
            "schema": str(root / "gbsg2_schema.json"), "modalities": ["clinical"]}
    options = synthetic.CohortOptions(with_images=False, genes=tuple(synthetic.gene_panel(40)))
    write_training_cohort(synthetic.make_cohort(3, 80 if quick else 150, 0, options), root / "synthetic", workers=1)
    out["synthetic task 3 (150, clinical + rna)"] = {
        "cohort": {"root": str(root / "synthetic")}, "modalities": ["clinical", "rna"], "genes": "from_cohort",
        "preprocess": {"rna": {"log1p": True, "top_k": 40, "n_components": 8}}}
    return out


def coxph_anchor(ctx, split, modalities) -> float:
    """scikit-survival CoxPH (small ridge) on the split's fold-fitted encoding of the same modalities."""
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    data = ctx.data
    enc = encode_fold(data, split.train, ctx.schema, ctx.config)
    x = np.hstack([enc.vectors[m] for m in modalities])
    train, test = list(split.train), list(split.test)
    y = Surv.from_arrays(data.event[train].astype(bool), data.time[train])
    model = CoxPHSurvivalAnalysis(alpha=0.01, ties="breslow").fit(x[train], y)
    return score(True, data, test, model.predict(x[test]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 folds, 1 repeat, 3 variants: a smoke run")
    parser.add_argument("--extra", action="store_true", help="add 2 variants and a GBSG2 subsample (slower)")
    parser.add_argument("--render", action="store_true", help="only re-write the markdown from the JSON")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "deep_small_cohort")
    args = parser.parse_args()
    if args.render:
        args.out.with_suffix(".md").write_text(markdown(json.loads(args.out.with_suffix(".json").read_text())))
        return 0
    variants = {**VARIANTS, **(EXTRA_VARIANTS if args.extra else {})}
    variants = dict(list(variants.items())[::3]) if args.quick else variants
    folds, repeats = (2, 1) if args.quick else (args.folds, args.repeats)
    started = time.perf_counter()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cohort_name, entries in cohorts(Path(tmp), args.quick, args.extra).items():
            base = load_config({"task": 3, "seed": 0, "work_dir": str(Path(tmp) / "work"), **entries,
                                "protocol": {"folds": folds, "repeats": repeats, "inner_val": 0.2}})
            ctx = Run(base).context()
            splits = cv_splits(ctx)
            row = {"n_patients": len(ctx.data), "n_events": int(ctx.data.event.sum()), "models": {}}
            anchor = [coxph_anchor(ctx, s, ctx.data.modalities) for s in splits]
            row["anchors"] = {"sksurv CoxPH (alpha 0.01)": _summary(anchor, [])}
            for name, train in variants.items():
                config = load_config({**base, "train": {**base["train"], **train}})
                vctx = dataclasses.replace(ctx, config=config, config_hash=config_hash(config))
                t0 = time.perf_counter()
                records = [run_split(vctx, name, {}, s)[0] for s in splits]
                row["models"][name] = _summary([r["metric"] for r in records], [r["best_epoch"] for r in records])
                row["models"][name]["seconds"] = round(time.perf_counter() - t0, 1)
                print(f"{cohort_name:42s} {name:30s} C {row['models'][name]['mean']:.3f} "
                      f"± {row['models'][name]['sd']:.3f}  ({row['models'][name]['seconds']} s)", flush=True)
            results[cohort_name] = row
    doc = {"what": __doc__.split("\n\n")[0], "folds": folds, "repeats": repeats, "variants": variants,
           "train_defaults": {k: v for k, v in load_config({})["train"].items() if k != "loss"},
           "architecture": "train/networks.py defaults (clinical MLP [32], RNA MLP [64, 32], concat_mlp [32])",
           "metric": "Harrell's C on the reported fold; fold mean ± sd over folds × repeats",
           "cohorts": results, "wall_s": round(time.perf_counter() - started, 1),
           "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()}}
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(markdown(doc))
    print(f"wall {doc['wall_s']} s")
    return 0


def _summary(values: list[float], epochs: list[int]) -> dict:
    arr = np.asarray(values, dtype=np.float64)
    out = {"mean": round(float(np.nanmean(arr)), 4), "sd": round(float(np.nanstd(arr)), 4),
           "folds": [round(float(v), 4) for v in arr]}
    if epochs:
        out["epochs"] = epochs
        out["epochs_le_4"] = int(sum(e <= 4 for e in epochs))
    return out


def _paired(values: list[float], base: np.ndarray) -> str:
    diff = np.asarray(values) - base
    if not np.any(diff):
        return "—"
    return f"{diff.mean():+.3f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):.3f}"


def markdown(doc: dict) -> str:
    lines = [f"# Deep training on small cohorts ({doc['folds']} folds × {doc['repeats']} repeats, same folds)", "",
             (f"{doc['metric']}. Δ: the paired per-fold difference to `{BASELINE}` (mean ± SE over folds). "
             f"Wall time {doc['wall_s']} s on 2 shared, busy cores. Variants: `train` keys over the defaults; "
             f"architecture: {doc['architecture']}. Generated by `benchmarks/deep_small_cohort.py`."), ""]
    for cohort, row in doc["cohorts"].items():
        lines += [f"## {cohort}: {row['n_patients']} patients, {row['n_events']} events", "",
                  ("| model | C-index | Δ vs old, paired (± SE) | folds better | median epochs | folds stopped ≤ 4 "
                  "| seconds |"), "|---|---|---|---|---|---|---|"]
        base = np.asarray(row["models"][BASELINE]["folds"])
        for name, s in row["anchors"].items():
            lines.append(f"| {name} (anchor) | {s['mean']:.3f} ± {s['sd']:.3f} | {_paired(s['folds'], base)} | | | | |")
        for name, s in row["models"].items():
            better = int(np.sum(np.asarray(s["folds"]) > base))
            lines.append(f"| {name} | {s['mean']:.3f} ± {s['sd']:.3f} | {_paired(s['folds'], base)} | "
                         f"{better}/{len(base)} | {int(np.median(s['epochs']))} | "
                         f"{s['epochs_le_4']}/{len(s['epochs'])} | {s['seconds']} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
