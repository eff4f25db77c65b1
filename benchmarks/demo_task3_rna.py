"""Does the demo's Task 3 bundle gain without RNA PCA? Synthetic draws through benchmarks/heldout_calibration.py.

The plan (variants, development and held-back seeds, the adoption rule) was written to
benchmarks/results/demo_task3_rna/plan.json before any draw ran. `current` is demo_task3.yaml's RNA preprocessing
before the change (top_k 100 + PCA 16, passed explicitly so the comparison reruns the same after the change);
`no_pca` drops the PCA, as train/configs/task3.yaml does after the real-data comparison
(benchmarks/results/rna_preprocessing.json). Each draw trains a bundle on its own synthetic cohort and scores 200
held-out patients (about a minute on 2 cores). Existing result files are kept, so a rerun only fills gaps.

Run: `nice -n 10 .venv/bin/python benchmarks/demo_task3_rna.py [--seeds 300 301 ...]`, then with `--summary`.
A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "benchmarks" / "results" / "demo_task3_rna"
VARIANTS = {"current": {"log1p": True, "top_k": 100, "n_components": 16},
            "no_pca": {"log1p": True, "top_k": 100, "n_components": None}}


def result(seed: int, variant: str) -> Path:
    return FOLDER / f"seed{seed}_{variant}.json"


def run_draw(seed: int, variant: str) -> None:
    work = ROOT / "runs" / f"demo_rna_s{seed}"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "heldout_calibration.py"), "--tasks", "3",
                    "--seed", str(seed), "--work", str(work), "--out", str(work / f"model_{variant}"),
                    "--rna", json.dumps(VARIANTS[variant]), "--result", str(result(seed, variant))],
                   check=True, cwd=ROOT)


def summarise(seeds: list[int]) -> dict[str, Any]:
    """Per variant: mean held-out C / oracle C, mean Harrell C, and how many draws pass each target (as each draw's
    file records it: heldout_calibration.py's `targets`)."""
    out = {}
    for variant in VARIANTS:
        rows = []
        for seed in seeds:
            task = json.loads(result(seed, variant).read_text())["tasks"]["3"]
            ev = task["evaluation"]
            rows.append({"seed": seed, "ratio_to_oracle": round(task["ratio_to_oracle"], 4),
                         "harrell_c": round(ev["harrell_c"], 4),
                         "d_calibration_p": round(ev["d_calibration"]["p_value"], 4),
                         "ibs": round(ev["ibs"], 4), "ibs_km": round(ev["ibs_km"], 4), **task["targets"]})
        out[variant] = {"draws": len(rows),
                        "mean_ratio_to_oracle": round(float(np.mean([r["ratio_to_oracle"] for r in rows])), 4),
                        "mean_harrell_c": round(float(np.mean([r["harrell_c"] for r in rows])), 4),
                        "d_calibration_p_gt_0.05": sum(bool(r["d_calibration_p_gt_0.05"]) for r in rows),
                        "ibs_le_km": sum(bool(r["ibs_le_km"]) for r in rows),
                        "at_least_0.97": sum(r["ratio_to_oracle"] >= 0.97 for r in rows), "per_draw": rows}
    return out


def adopted(dev: dict[str, Any]) -> bool:
    """The plan's rule, on the development seeds only."""
    new, old = dev["no_pca"], dev["current"]
    return (new["mean_ratio_to_oracle"] - old["mean_ratio_to_oracle"] >= 0.01
            and new["d_calibration_p_gt_0.05"] >= old["d_calibration_p_gt_0.05"] and new["ibs_le_km"] >= old["ibs_le_km"])


def main(argv: list[str] | None = None) -> int:
    plan = json.loads((FOLDER / "plan.json").read_text())
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=plan["development_seeds"] + plan["held_back_seeds"])
    parser.add_argument("--summary", action="store_true", help="write summary.json from the result files")
    args = parser.parse_args(argv)
    if args.summary:
        dev, held = summarise(plan["development_seeds"]), summarise(plan["held_back_seeds"])
        doc = {**plan, "development": dev, "adopted": "no_pca" if adopted(dev) else "current",
               "development_gain": round(dev["no_pca"]["mean_ratio_to_oracle"]
                                         - dev["current"]["mean_ratio_to_oracle"], 4), "held_back": held}
        (FOLDER / "summary.json").write_text(json.dumps(doc, indent=1) + "\n")
        for group in ("development", "held_back"):
            for variant, s in doc[group].items():
                print(group, variant, {k: v for k, v in s.items() if k != "per_draw"})
        print("adopted:", doc["adopted"])
        return 0
    for seed in args.seeds:
        for variant in VARIANTS:
            if not result(seed, variant).is_file():
                run_draw(seed, variant)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
