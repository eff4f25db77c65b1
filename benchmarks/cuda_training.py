"""Training on a GPU end to end, the way a user runs it: `python -m train CONFIG` with `device: cuda` against the
same config with `device: cpu`, then the container on the bundles both wrote.

A small synthetic Task 3 cohort (training layout: slides, RNA, clinical) and four grand-challenge cases are
generated under --work. Two models are trained on each device: `auto` with a gated-ABMIL network among its options,
and the network alone (whose exported members are networks). Every bundle then predicts every case with
`inference.py`: the GPU-trained bundles with `--device cuda` and `--device cpu`, the CPU-trained ones with `--device
cpu`. The JSON says, per model and device, whether training finished, its
CV line and wall time, and per bundle and case the predicted months on both inference devices; the summary gives
the largest relative difference between the CPU- and the GPU-trained bundles' predictions (they differ: a network
trained on another device is another network, equal up to float noise that early stopping can amplify) and
between the two inference devices for one bundle. A benchmark run on a lent GPU machine (benchmarks/gpu_checks.sh),
not a test.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASE = """task: 3
seed: 0
threads: 1
device: {device}
cohort:
  root: cohort
schema: 3
genes: from_cohort
recipe: {{encoder: test-tiny, weights: seeded, target_mpp: 2.0, patch_size: 32, min_tissue: 0.5, max_patches: 64,
         time_budget_s: null, batch_size: 64}}
work_dir: work_{name}_{device}
out: bundle_{name}_{device}/nmibc-recurrence
preprocess:
  rna: {{log1p: true, top_k: 50}}
protocol: {{folds: 3, repeats: 1, inner_val: 0.2, cohort_holdout: false, bootstrap: 20, members: 2}}
train: {{epochs: 15, batch_size: 16, lr: 0.003, weight_decay: 0.0001, patience: 5, min_epochs: 3, max_patches: 64}}
"""
MODELS = {
    "auto_networks": "model: auto\nauto: {inner_folds: 3, inner_repeats: 1, networks: {abmil: {}}}\n",
    "network": ("model:\n  encoders:\n    wsi: {name: abmil_gated, hidden: 32, attn_hidden: 16, dropout: 0.1}\n"
                "    clinical: {name: mlp, hidden: [16], dropout: 0.1}\n    rna: {name: mlp, hidden: [16], dropout: 0.1}\n"
                "  fusion: {name: concat_mlp, hidden: [16], dropout: 0.1}\n  head: {name: cox}\n"),
}


def _run(command: list[str], cwd: Path | None = None, timeout: int = 900) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    return done.returncode, done.stdout + done.stderr, round(time.perf_counter() - t0, 1)


def make_data(work: Path) -> list[Path]:
    make = [sys.executable, "-m", "chimera_surv.make_cases", "--task", "3", "--genes", "100", "--wsi-size", "1024x768"]
    if not (work / "cohort").is_dir():
        _run([*make, "--layout", "training", "--n", "50", "--seed", "5", "--out", str(work / "cohort")], ROOT)
    if not (work / "cases").is_dir():
        _run([*make, "--layout", "gc", "--n", "4", "--seed", "99", "--out", str(work / "cases")], ROOT)
    return sorted(p for p in (work / "cases").iterdir() if (p / "inputs.json").is_file())


def train(work: Path, name: str, device: str) -> dict[str, Any]:
    config = work / f"{name}_{device}.yaml"
    config.write_text(BASE.format(device=device, name=name) + MODELS[name])
    rc, log, seconds = _run([sys.executable, "-m", "train", str(config)], ROOT)
    cv = next((line for line in log.splitlines() if line.startswith("cv: model:")), None)
    return {"rc": rc, "seconds": seconds, "cv": cv, "bundle": str(work / f"bundle_{name}_{device}"),
            **({"log_tail": log.splitlines()[-5:]} if rc else {})}


def predict(bundle: str, case: Path, device: str, out: Path) -> dict[str, Any]:
    rc, log, seconds = _run([sys.executable, "inference.py", "--input", str(case), "--output", str(out),
                             "--model", bundle, "--device", device], ROOT)
    result = next((json.loads(m.group(1)) for m in re.finditer(r"RESULT (\{.*\})", log)), {})
    return {"rc": rc, "months": result.get("value"), "degraded": result.get("degraded"),
            "model": result.get("model"), "seconds": seconds}


def _rel(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return round(abs(a - b) / max(abs(b), 1e-9), 6)


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "cuda_training")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cuda_training.json")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    cases = make_data(args.work)
    import torch

    doc: dict[str, Any] = {"what": __doc__.split("\n\n")[0], "command": "benchmarks/cuda_training.py",
                           "machine": (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
                           + f", torch {torch.__version__}", "training": {}, "inference": {}}
    for name in MODELS:
        for device in args.devices:
            doc["training"][f"{name}/{device}"] = trained = train(args.work, name, device)
            print(name, device, trained["rc"], trained["seconds"], trained["cv"], flush=True)
            if trained["rc"]:
                continue
            for case in cases:  # a GPU-trained bundle on both devices; a CPU-trained one on the CPU (the reference)
                for on in (args.devices if device != "cpu" else ["cpu"]):
                    key = f"{name}/{device}/{case.name}/{on}"
                    doc["inference"][key] = predict(trained["bundle"], case, on, args.work / "out" / key)
            _write(args.out, doc)  # what finished survives a timeout
    inf = doc["inference"]
    doc["summary"] = {
        "all_trained": all(t["rc"] == 0 for t in doc["training"].values()),
        "all_predictions_finite": bool(inf) and all(isinstance(v["months"], float) for v in inf.values()),
        "trained_on_gpu_vs_cpu_max_rel": {n: max((r for c in cases if (r := _rel(
            inf.get(f"{n}/cuda/{c.name}/cpu", {}).get("months"), inf.get(f"{n}/cpu/{c.name}/cpu", {}).get("months")))
            is not None), default=None) for n in MODELS},
        "inference_gpu_vs_cpu_max_rel": max((r for k, v in inf.items() if k.endswith("/cuda") and (r := _rel(
            v["months"], inf.get(k[: -len("cuda")] + "cpu", {}).get("months"))) is not None), default=None)}
    _write(args.out, doc)
    print(json.dumps(doc["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
