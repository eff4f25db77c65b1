"""How close to the demo's oracle can any model get? The ceiling of what the synthetic patients let a model see.

The demo's oracle ranks held-out patients by their planted latent risk z. No model sees z: each patient's clinical
record, slides, MRI and RNA are noisy views of it (chimera_surv/synthetic: every image/RNA modality correlates 0.75
with z, each clinical field less). This fits a linear Cox model (lifelines) on 20,000 synthetic training patients,
on the clinical record coded as numbers (one-hot categories, log1p of each number, missing indicators) plus
the exact per-modality views that the images and RNA are rendered from (so no image noise at all), and scores it on
the same held-out draws as benchmarks/heldout_calibration.py (200 patients of the test stream, seeds 1-25). Its C
over the oracle's C on the same patients estimates the ceiling; the clinical-only model is beside it.

Run: `nice -n 10 .venv/bin/python benchmarks/oracle_ceiling.py [--tasks 1 3]` → benchmarks/results/oracle_ceiling.json.
A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULT = ROOT / "benchmarks" / "results" / "oracle_ceiling.json"
LABEL_KEYS = {"BRS"}  # a Task 3 record also carries the BRS class, which is not a clinical input


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def code_patients(patients: list[Any], fill: dict[str, float] | None = None, columns: list[str] | None = None):
    """(frame, fill): one row per patient: clinical fields as numbers or one-hot categories, log1p beside each
    number, missing indicators, then `view_<modality>`. Missing numbers get the training medians
    (`fill`, computed here for the training frame and passed in for a test frame); `columns` aligns a test frame."""
    import pandas as pd

    rows = []
    for p in patients:
        row: dict[str, Any] = {}
        for key, value in p.clinical.items():
            if key in LABEL_KEYS:
                continue
            number = _number(value)
            if np.isfinite(number) or value is None:
                row[key] = number
            else:
                row[f"{key}={value}"] = 1.0
        row.update({f"view_{m}": v for m, v in p.modality_views.items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    numeric = [c for c in frame.columns if "=" not in c and not c.startswith("view_")]
    if fill is None:
        fill = {c: float(frame[c].median()) if frame[c].notna().any() else 0.0 for c in numeric}
    for c in frame.columns:
        if "=" in c:
            frame[c] = frame[c].fillna(0.0)
    for c in numeric:
        missing = frame[c].isna()
        frame[c] = frame[c].fillna(fill.get(c, 0.0))
        frame[f"{c}_missing"] = missing.astype(float)
        frame[f"log1p_{c}"] = np.log1p(frame[c].clip(lower=0))  # skewed labs (PSA); the same in every frame
    if columns is not None:
        frame = frame.reindex(columns=columns, fill_value=0.0)
    return frame, fill


def ceiling(task: int, n_big: int, draws: int, n_heldout: int) -> dict[str, Any]:
    from lifelines import CoxPHFitter

    from chimera_surv import synthetic
    from chimera_surv.survival.metrics import harrell_c
    from train.demo import _options

    big = synthetic.make_cohort(task, n_big, 1000, _options(task, "training"))
    frame, fill = code_patients(big)
    frame = frame.loc[:, frame.std() > 0]
    columns = list(frame.columns)
    clinical = [c for c in columns if not c.startswith("view_")]
    frame["time"] = [float(p.time) for p in big]
    frame["event"] = [int(p.event) for p in big]
    full = CoxPHFitter(penalizer=1e-4).fit(frame, "time", "event")
    clin = CoxPHFitter(penalizer=1e-4).fit(frame[[*clinical, "time", "event"]], "time", "event")
    rows = []
    for seed in range(draws):
        test = synthetic.make_cohort(task, n_heldout, seed + 1, _options(task, "test"))
        coded, _ = code_patients(test, fill, columns)
        t = np.array([float(p.time) for p in test])
        e = np.array([bool(p.event) for p in test])
        oracle = harrell_c(e, t, np.array([p.latent_risk for p in test]))
        rows.append({"seed": seed, "oracle_c": oracle,
                     "views_and_clinical": harrell_c(e, t, full.predict_log_partial_hazard(coded).to_numpy()) / oracle,
                     "clinical_only": harrell_c(e, t, clin.predict_log_partial_hazard(coded[clinical]).to_numpy())
                     / oracle})
    summary = {k: {"mean": float(np.mean([r[k] for r in rows])), "min": float(np.min([r[k] for r in rows])),
                   "max": float(np.max([r[k] for r in rows]))} for k in ("views_and_clinical", "clinical_only")}
    return {"n_train": n_big, "n_heldout": n_heldout, "draws": len(rows), "columns": columns,
            "ratio_to_oracle": summary, "per_draw": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--draws", type=int, default=25)
    parser.add_argument("--n-heldout", type=int, default=200)
    parser.add_argument("--result", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    doc: dict[str, Any] = {"what": __doc__.split("\n\n")[0],
                           "command": " ".join(["benchmarks/oracle_ceiling.py", *(argv or sys.argv[1:])]), "tasks": {}}
    for task in args.tasks:
        t0 = time.perf_counter()
        doc["tasks"][str(task)] = ceiling(task, args.n_train, args.draws, args.n_heldout)
        s = doc["tasks"][str(task)]["ratio_to_oracle"]
        print(f"task {task}: C / oracle C, clinical + exact views {s['views_and_clinical']['mean']:.3f} "
              f"({s['views_and_clinical']['min']:.3f}-{s['views_and_clinical']['max']:.3f}), clinical only "
              f"{s['clinical_only']['mean']:.3f}; {time.perf_counter() - t0:.0f} s", flush=True)
    args.result.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
