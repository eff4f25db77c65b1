"""Issue 23: what images earn when `auto` may choose a network, and what that costs.

Two synthetic Task 1 cohorts (train/demo.py's generator and config: WSIs + MRI measurements + clinical): one with
the planted image risk (modality_signal 0.75, the demo's), one whose images and MRI carry nothing
(modality_signal 0). On each, three models on the same folds:
- `auto` (the default: classical families and their equal ensemble),
- `auto + networks` (`auto.networks: {deep: <the demo's gated-ABMIL network>}`, scored on the same inner splits),
- clinical-only `auto` (the clinical backbone alone).
Each runs extract → fit → cv → export; reported: the CV C-index (fold mean), the held-out C-index of the exported
bundle on synthetic cases of another patient stream (through inference.py's code) beside the oracle of the latent
risk, what auto chose (per member and per CV fold), and the wall time and peak memory of that variant's process.
The "gate" question is answered by auto's choice: on the cohort whose images carry nothing, does it still export an
image model, and does it lose anything against clinical-only?

Run: `nice -n 10 .venv/bin/python benchmarks/auto_networks.py [--n 90] [--n-heldout 60] [--seed 0]
[--variants auto clinical_only] [--result F]` → benchmarks/results/auto_networks.json. Each variant runs in its own process (peak RSS per variant). A benchmark,
not a test.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULT = ROOT / "benchmarks" / "results" / "auto_networks.json"
STEPS = ("extract", "fit", "cv", "export")
SIGNALS = {"planted": 0.75, "null": 0.0}


def _deep_arch() -> dict[str, Any]:
    """The demo config's `compare.deep` network (gated ABMIL slides + MLP clinical/MRI, concat fusion, Cox head)."""
    import yaml

    return yaml.safe_load((ROOT / "train" / "configs" / "demo_task1.yaml").read_text())["compare"]["deep"]


def variants() -> dict[str, dict[str, Any]]:
    return {"auto": {},
            "auto_networks": {"auto": {"inner_folds": 4, "networks": {"deep": _deep_arch()}}},
            "clinical_only": {"model": {"name": "auto", "modalities": ["clinical"]}}}


def _options(signal: float, stream: str) -> Any:
    from train.demo import _options as demo_options

    return dataclasses.replace(demo_options(1, stream), modality_signal=signal)


def run_variant(signal_name: str, variant: str, work: Path, n: int, n_heldout: int, seed: int) -> dict[str, Any]:
    """One (cohort, variant) in this process: train, CV, export, held-out scoring."""
    from chimera_surv import synthetic
    from chimera_surv.make_cases import write_gc_cases, write_training_cohort
    from train.demo import predict, score, train_task

    signal = SIGNALS[signal_name]
    base = work / signal_name
    cohort = base / variant / "cohort_task1"
    shared = base / "cohort_task1"
    if not (shared / "labels.csv").is_file():
        write_training_cohort(synthetic.make_cohort(1, n, seed, _options(signal, "training")), shared, workers=2,
                              overwrite=True)
    cohort.parent.mkdir(parents=True, exist_ok=True)
    if not cohort.exists():
        cohort.symlink_to(shared.resolve(), target_is_directory=True)
    started = time.perf_counter()
    bundle = train_task(1, base / variant, base / variant / "model", n, seed, STEPS, overrides=variants()[variant],
                        compare=False)
    train_s = time.perf_counter() - started
    cv = [json.loads(p.read_text()) for p in sorted((base / variant / "work_task1" / "cv" / "model").glob("*.json"))]
    members = [json.loads(p.read_text()) for p in sorted((base / variant / "work_task1" / "members").glob("*.json"))]
    heldout = base / "heldout_cases"
    if not heldout.is_dir():
        write_gc_cases(synthetic.make_cohort(1, n_heldout, seed, _options(signal, "test")), heldout, seed=seed,
                       workers=2)
    cases = sorted(p for p in heldout.iterdir() if (p / "expected.json").is_file())
    truth = [json.loads((case / "expected.json").read_text()) for case in cases]
    values = [predict(case, bundle.parent, base / variant / "outputs" / case.name, use_subprocess=False)[0]
              for case in cases]
    held, oracle, _ = score(1, truth, values)
    return {"cv_c_fold_mean": float(np.nanmean([r["metric"] for r in cv])),
            "cv_choices": dict(collections.Counter((r.get("auto") or {}).get("chosen") for r in cv)),
            "member_choices": dict(collections.Counter((r.get("auto") or {}).get("chosen") for r in members
                                                       if not r["name"].rstrip("0123456789").endswith("s"))),
            "member_kinds": sorted({r.get("kind", "network") for r in members}),
            "heldout_c": held, "oracle_c": oracle, "heldout_over_oracle": held / oracle,
            "seconds_train_cv_export": round(train_s, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=90, help="training patients (the demo's Task 1 size)")
    parser.add_argument("--n-heldout", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_auto_networks")
    parser.add_argument("--variants", nargs="+", default=None, help="a subset of auto, auto_networks, clinical_only")
    parser.add_argument("--result", type=Path, default=RESULT)
    parser.add_argument("--one", nargs=2, metavar=("COHORT", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # a child process: one variant, its result on stdout
        print("RESULT " + json.dumps(run_variant(*args.one, args.work, args.n, args.n_heldout, args.seed)))
        return 0
    doc: dict[str, Any] = {"what": __doc__.split("\n\n")[0], "command": "benchmarks/auto_networks.py "
                           + " ".join(argv or sys.argv[1:]), "n_train": args.n, "n_heldout": args.n_heldout,
                           "machine": f"{os.cpu_count()} CPU cores, shared with other jobs", "cohorts": {}}
    for signal, value in SIGNALS.items():
        doc["cohorts"][signal] = {"modality_signal": value}
        for variant in args.variants or list(variants()):
            command = [sys.executable, __file__, "--one", signal, variant, "--n", str(args.n), "--n-heldout",
                       str(args.n_heldout), "--seed", str(args.seed), "--work", str(args.work)]
            done = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
            line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
            result = json.loads(line[7:]) if line else {"error": done.stderr.strip().splitlines()[-1:]}
            doc["cohorts"][signal][variant] = result
            print(f"{signal} {variant}: {json.dumps(result)}", flush=True)
            args.result.parent.mkdir(parents=True, exist_ok=True)
            args.result.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"written {args.result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
