"""Issue 23's calibration check: do the bundle's per-patient survival curves hold on held-out synthetic patients?

The demo's bundles (train/demo.py: synthetic CHIMERA cohorts, default `model`, extract → fit → export) predict a
held-out synthetic cohort drawn from another patient stream, through `chimera_surv.predict_cohort` (the container's
per-patient code; nothing is fitted on the held-out patients). Each patient's risk goes through the bundle's stored
survival curve (chimera_surv.survival.calibration.SurvivalCurve, the per-patient S(t) that `predict_cohort` and
the RESULT line report beside the months), and the full evaluation (chimera_surv/survival/evaluation.py) is run:
Harrell and Uno C, time-dependent AUC, the integrated Brier score of the curves beside the training Kaplan-Meier
curve's (the "no model" baseline), the D-calibration test, bootstrap 95% CIs. The targets (issue 23): D-calibration
p > 0.05 and IBS no worse than the KM baseline.

Run: `nice -n 10 .venv/bin/python benchmarks/heldout_calibration.py [--tasks 1 3] [--n-heldout 200]`
(reuses runs/demo's cohorts and trained work when present; writes benchmarks/results/heldout_calibration.json).
A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULT = ROOT / "benchmarks" / "results" / "heldout_calibration.json"


def _risk_column(row: dict[str, Any]) -> str:
    """`risk`, or whatever predict_cohort names its risk column (the name may carry its scale)."""
    return next(k for k in row if k.split(" ")[0].split("(")[0] == "risk")


def _labels(cohort: Path) -> tuple[np.ndarray, np.ndarray]:
    """The training cohort's (time in months, event) from its labels.csv."""
    with (cohort / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    time_key = next(k for k in rows[0] if "time" in k.lower())
    event_key = next(k for k in rows[0] if "event" in k.lower() or "status" in k.lower())
    return (np.array([float(r[time_key]) for r in rows]),
            np.array([int(float(r[event_key])) for r in rows], dtype=bool))


# Task 1's training draws by role: 0-4 were reported (and read) before any rule was chosen on them, the
# survival_curve.clip_mad rule was chosen on the development draws, and the held-back ones were read once after
DRAW_GROUPS = {"reported": range(5), "development": [*range(5, 10), *range(20, 25)], "held-back": range(10, 20),
               "fresh": range(30, 40)}  # fresh: the second clip_mad rule's draws (survival_curve_clip.RULE_FRESH)


def draw_group(task: int, seed: int) -> str:
    """The draw's role (Task 1 only; another task's draws only evaluate the default: "evaluation")."""
    if task != 1:
        return "evaluation"
    return next((name for name, seeds in DRAW_GROUPS.items() if seed in seeds), "other")


def curve_grid(train_time: np.ndarray, train_event: np.ndarray) -> np.ndarray:
    """The times (months) the curves are read at: 199 even steps and every training event, inside follow-up."""
    grid = np.unique(np.concatenate([np.linspace(0.0, float(train_time.max()), 200)[1:], train_time[train_event]]))
    return grid[grid < train_time.max()]


def run_task(task: int, work: Path, out: Path, n_train: int, n_heldout: int, seed: int,
             member_repeats: int | None = None, clip_mad: float | str | None = "default",
             rna: dict[str, Any] | None = None) -> dict[str, Any]:
    from chimera_surv import synthetic
    from chimera_surv.bundle import load_bundle
    from chimera_surv.make_cases import write_training_cohort
    from chimera_surv.meaning import survival_curve
    from chimera_surv.predict_cohort import predict_cohort
    from chimera_surv.survival.evaluation import evaluate_survival
    from chimera_surv.survival.metrics import harrell_c
    from train.demo import _options, train_task

    started = time.perf_counter()
    overrides: dict[str, Any] = {"protocol": {"member_repeats": member_repeats}} if member_repeats else {}
    if clip_mad != "default":  # survival_curve.clip_mad is export-only: the members are reused
        overrides["survival_curve"] = {"clip_mad": clip_mad}
    if rna is not None:  # another preprocess.rna for the bundle (a variant compared on development draws)
        overrides["preprocess"] = {"rna": rna}
    bundle_dir = train_task(task, work, out, n_train, seed, overrides=overrides or None, compare=False)
    train_s = time.perf_counter() - started
    bundle = load_bundle(bundle_dir)
    curve = survival_curve(bundle)
    if curve is None:
        return {"error": f"{bundle_dir}: the bundle stores no survival curve"}
    heldout_dir = work / f"heldout_calibration_task{task}"
    patients = synthetic.make_cohort(task, n_heldout, seed + 1, _options(task, "test"))
    if not (heldout_dir / "labels.csv").is_file():
        write_training_cohort(patients, heldout_dir, workers=2, overwrite=True)
    t0 = time.perf_counter()
    _, rows = predict_cohort(bundle_dir, heldout_dir, out=work / f"heldout_calibration_task{task}.csv")
    predict_s = time.perf_counter() - t0
    truth = {p.case_id: p for p in patients}
    key = _risk_column(rows[0])
    # a documented degraded path (e.g. a clinical field coded missing, imputed) still predicts: kept, and counted
    ok = [r for r in rows if r["case_id"] in truth and str(r.get(key, "")).strip() not in ("", "nan")]
    risk = np.array([float(r[key]) for r in ok])
    test_time = np.array([float(truth[r["case_id"]].time) for r in ok])
    test_event = np.array([bool(truth[r["case_id"]].event) for r in ok])
    train_time, train_event = _labels(work / f"cohort_task{task}")
    grid = curve_grid(train_time, train_event)
    surv = np.array([curve.survival(r, list(grid)) for r in risk])
    ev = evaluate_survival(train_time, train_event, test_time, test_event, risk, surv=surv, surv_times=grid,
                           n_boot=200, seed=seed)
    dcal_p = (ev["d_calibration"] or {}).get("p_value")
    # the same held-out patients ranked by their planted latent risk: the demo's "oracle", on 200 patients not 30
    latent = np.array([float(truth[r["case_id"]].latent_risk) for r in ok])
    oracle_c = harrell_c(test_event, test_time, latent)
    return {"oracle_harrell_c": oracle_c, "ratio_to_oracle": ev["harrell_c"] / oracle_c if oracle_c else None,
            "n_train": len(train_time), "train_events": int(train_event.sum()), "n_heldout": len(ok),
            "heldout_events": int(test_event.sum()), "n_failed": len(rows) - len(ok),
            "n_degraded": sum(str(r.get("status", "")).startswith("degraded") for r in ok),
            "model": (bundle.meta.get("auto") or {}).get("chosen"), "n_members": len(bundle.members),
            "calibration_beta": curve.beta, "curve_risk_range": curve.risk_range, "evaluation": ev,
            "targets": {"d_calibration_p_gt_0.05": None if dcal_p is None else bool(dcal_p > 0.05),
                        "ibs_le_km": None if ev["ibs"] is None or ev["ibs_km"] is None
                        else bool(ev["ibs"] <= ev["ibs_km"])},
            "seconds": {"train_or_reuse": round(train_s, 1), "predict_heldout": round(predict_s, 1)}}


def aggregate(files: list[Path], out: Path) -> dict[str, Any]:
    """Several training draws (--seed) and member repeats (--member-repeats, read from each file's command; 1 when
    absent) side by side: per result file and task, C, IBS beside
    KM's, the D-calibration p and the calibration slope; then how many draws meet each target."""
    draws = []
    for file in files:
        doc = json.loads(file.read_text())
        for task, r in doc["tasks"].items():
            ev = r.get("evaluation") or {}
            command = str(doc.get("command") or "").split()
            repeats = int(command[command.index("--member-repeats") + 1]) if "--member-repeats" in command else 1
            seed = int(command[command.index("--seed") + 1]) if "--seed" in command else 0
            draws.append({"file": str(file), "command": doc.get("command"), "task": int(task), "seed": seed,
                          "draw_group": draw_group(int(task), seed),
                          "member_repeats": repeats, "n_members": r.get("n_members"), "calibration_beta": r.get("calibration_beta"),
                          "harrell_c": ev.get("harrell_c"), "ratio_to_oracle": r.get("ratio_to_oracle"),
                          "ibs": ev.get("ibs"), "ibs_km": ev.get("ibs_km"),
                          "d_calibration_p": (ev.get("d_calibration") or {}).get("p_value"), **r.get("targets", {})})
    summary: dict[str, Any] = {}
    keys = {(d["task"], d["member_repeats"], g) for d in draws for g in ("all", d["draw_group"])}
    for key in sorted(keys):
        group = [d for d in draws if (d["task"], d["member_repeats"]) == key[:2] and key[2] in ("all", d["draw_group"])]
        summary[f"task {key[0]}, member_repeats {key[1]}, {key[2]} draws"] = {
            "draws": len(group), "d_calibration_p_gt_0.05": sum(bool(d["d_calibration_p_gt_0.05"]) for d in group),
            "ibs_le_km": sum(bool(d["ibs_le_km"]) for d in group),
            "mean_harrell_c": float(np.mean([d["harrell_c"] for d in group])),
            **_ratio_summary([d["ratio_to_oracle"] for d in group if d.get("ratio_to_oracle") is not None])}
    result = {"what": "heldout_calibration.py over several training draws: how often the targets hold",
              "summary": summary, "draws": draws}
    out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    return result


def _clip(value: str) -> float | str | None:
    """--clip-mad: a positive number, `none` (no clipping) or `default` (the training config's)."""
    if value in ("default", "none"):
        return None if value == "none" else value
    number = float(value)
    if not number > 0:
        raise SystemExit(f"--clip-mad: {value!r} is not a positive number, none or default")
    return number


def oracle_draws(task: int, n_train: int, n_heldout: int, seeds: list[int]) -> dict[str, Any]:
    """What a perfect ranking earns on the same check: each draw's training and held-out patients (the same
    generator calls as run_task), the planted latent risk as the score, the bundle's kind of survival curve
    (train/survival_curve.py) fitted on the training patients only, then D-calibration and IBS on the held-out
    ones. How often even this passes says how far a D-calibration miss in one draw is luck."""
    from chimera_surv import synthetic
    from chimera_surv.survival.evaluation import evaluate_survival
    from train.demo import _options
    from train.survival_curve import fit_survival_curve

    rows = []
    for seed in seeds:
        train = synthetic.make_cohort(task, n_train, seed, _options(task, "training"))
        test = synthetic.make_cohort(task, n_heldout, seed + 1, _options(task, "test"))
        time = np.array([float(p.time) for p in train])
        event = np.array([bool(p.event) for p in train])
        curve = fit_survival_curve(np.array([p.latent_risk for p in train]), time, event, None)
        grid = curve_grid(time, event)
        risk = np.array([p.latent_risk for p in test])
        surv = np.array([curve.survival(r, list(grid)) for r in risk])
        ev = evaluate_survival(time, event, np.array([float(p.time) for p in test]),
                               np.array([bool(p.event) for p in test]), risk, surv=surv, surv_times=grid, n_boot=0)
        rows.append({"seed": seed, "d_calibration_p": ev["d_calibration"]["p_value"], "ibs": ev["ibs"],
                     "ibs_km": ev["ibs_km"], "harrell_c": ev["harrell_c"]})
    return {"what": "the planted latent risk through the same check (training curve, held-out D-calibration, IBS)",
            "task": task, "n_train": n_train, "n_heldout": n_heldout, "draws": rows,
            "d_calibration_p_gt_0.05": sum(r["d_calibration_p"] > 0.05 for r in rows),
            "ibs_le_km": sum(r["ibs"] <= r["ibs_km"] for r in rows)}


def _ratio_summary(ratios: list[float]) -> dict[str, Any]:
    """Held-out C over the oracle's C on the same 200 patients, over the draws that recorded it."""
    if not ratios:
        return {}
    return {"ratio_to_oracle": {"draws": len(ratios), "mean": float(np.mean(ratios)), "min": float(np.min(ratios)),
                                "max": float(np.max(ratios)), "at_least_0.97": int(sum(r >= 0.97 for r in ratios))}}


def main(argv: list[str] | None = None) -> int:
    from train.demo import DEMO_SIZES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--n-heldout", type=int, default=200)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "demo")
    parser.add_argument("--out", type=Path, default=ROOT / "model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=None, help="training patients (default: the demo's)")
    parser.add_argument("--member-repeats", type=int, default=None,
                        help="protocol.member_repeats for the bundle (default: the demo config's)")
    parser.add_argument("--clip-mad", default="default",
                        help="survival_curve.clip_mad for the bundle: a number, none, or default (the config's)")
    parser.add_argument("--rna", type=json.loads, default=None,
                        help='preprocess.rna for the bundle as JSON, e.g. \'{"log1p": true, "top_k": 100}\' '
                             "(default: the demo config's)")
    parser.add_argument("--oracle-seeds", type=int, nargs="+", default=None,
                        help="instead of training: the planted risk through the same check on these draws")
    parser.add_argument("--result", type=Path, default=RESULT)
    parser.add_argument("--aggregate", type=Path, nargs="+", default=None,
                        help="result files of earlier runs: write their side-by-side summary to --result instead")
    args = parser.parse_args(argv)
    if args.oracle_seeds:
        docs = {str(t): oracle_draws(t, args.n_train or DEMO_SIZES[t], args.n_heldout, args.oracle_seeds)
                for t in args.tasks}
        for t, d in docs.items():
            print(f"task {t} oracle: D-calibration p > 0.05 in {d['d_calibration_p_gt_0.05']}/{len(d['draws'])}, "
                  f"IBS <= KM in {d['ibs_le_km']}/{len(d['draws'])}")
        args.result.parent.mkdir(parents=True, exist_ok=True)
        args.result.write_text(json.dumps({"command": " ".join(["benchmarks/heldout_calibration.py",
                                                                *(argv or sys.argv[1:])]), "tasks": docs},
                                          indent=1, default=float) + "\n")
        return 0
    if args.aggregate:
        print(json.dumps(aggregate(args.aggregate, args.result)["summary"], indent=1))
        return 0
    doc: dict[str, Any] = {"what": __doc__.split("\n\n")[0], "command": " ".join(["benchmarks/heldout_calibration.py",
                                                                                 *(argv or sys.argv[1:])]),
                           "tasks": {}}
    for task in args.tasks:
        doc["tasks"][str(task)] = run_task(task, args.work, args.out, args.n_train or DEMO_SIZES[task],
                                           args.n_heldout, args.seed, args.member_repeats, _clip(args.clip_mad),
                                           args.rna)
        ev = doc["tasks"][str(task)].get("evaluation") or {}
        print(f"task {task}: harrell C {ev.get('harrell_c')} (× oracle {doc['tasks'][str(task)].get('ratio_to_oracle')}), "
              f"IBS {ev.get('ibs')} (KM {ev.get('ibs_km')}), "
              f"D-calibration p {(ev.get('d_calibration') or {}).get('p_value')}", flush=True)
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    print(f"written {args.result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
