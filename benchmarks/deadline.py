"""Deadline benchmark: (finish time - deadline) of whole cases, on CPU and on simulated slow hardware, written as JSON.

Each run is `inference.main` in this process (the platform's code path: read the case, extract within the clock,
predict, write the output, then `--explain` if it fits), timed from just before the call to its return. Cases are
synthetic Task 2 cases whose one slide has a side of 1k to 8k px at 0.25 um/px (about 10 to 700 patches at the
bundle's 2 um/px, 32 px recipe); the bundle is a small classical one trained here on the tiny seeded encoder.
Two encoders:
  cpu   the tiny encoder as it is (real CPU cost; no slide needs cutting);
  slow  the same encoder slowed to a simulated CPU cost of UNI: `--per-patch-s` per patch plus `--overhead-s`
        a call, so one 64-patch batch (6.4 s) outlasts a 2 s reserve three times over (what a CPU batch of UNI at
        2-10 s a patch does to the image's 60 s reserve, scaled down in time).
each with --explain off and on, and with a reserve that leaves --explain no time (2 s) or room for a heatmap. Also: how far a prefix cut moves the pooled slide features (max vs q90), on
synthetic bags and on tiny-encoder bags of synthetic slides cut by the progressive order.

Usage: python benchmarks/deadline.py [--out benchmarks/results/deadline.json] [--deadline 20] [--reserves 2 14]
Default run: a few minutes on a busy 2-core machine (trains the bundle once into --work, reused afterwards).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np

import inference
from chimera_surv import features
from chimera_surv.classical.design import pool_bag
from chimera_surv.deadline import Deadline
from chimera_surv.encoders import load_encoder

SIZES = (1024, 2048, 4096, 6144, 8192)


class SimulatedEncoder:
    """The tiny seeded encoder, slowed to `per_patch` s per patch plus `overhead` s per call (a slow device)."""

    def __init__(self, per_patch: float, overhead: float) -> None:
        self.inner = load_encoder("test-tiny", None, "cpu", weights="seeded")
        self.spec, self.mean = self.inner.spec, self.inner.mean
        self.per_patch, self.overhead = per_patch, overhead

    def embed(self, patches: Any) -> Any:
        time.sleep(self.overhead + self.per_patch * len(patches))
        return self.inner.embed(patches)


class Lines(logging.Handler):
    """Keeps the structured lines of the current run (EXTRACT, RESULT, EXPLAIN ...)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def json_of(self, prefix: str) -> dict[str, Any] | None:
        for line in self.lines:
            if line.startswith(prefix + " "):
                return json.loads(line[len(prefix) + 1:])
        return None


def train_bundle(work: Path) -> Path:
    """A small classical Task 2 bundle on the tiny encoder, without a patch cap (trained once into `work`)."""
    from train import demo

    model = work / "model"
    if not (model / "bladder-brs" / "bundle.json").is_file():
        demo.train_task(2, work / "train", model, 24, seed=0,
                        overrides={"recipe": {"max_patches": None},
                                   "auto": {"inner_folds": 3, "ensembles": [], "backbone_residual": False,
                                            "candidates": {"ridge": {"family": "ridge"}}}})
    return model


def make_cases(work: Path, sizes: tuple[int, ...]) -> dict[int, Path]:
    from chimera_surv import synthetic
    from chimera_surv.make_cases import write_gc_cases
    from train import demo

    cases = {}
    for size in sizes:
        folder = work / "cases" / f"side{size}"
        found = sorted(p.parent for p in folder.glob("*/inputs.json"))
        if not found:
            options = dataclasses.replace(demo._options(2, "test"), wsi_size=(size, size))
            found = [Path(write_gc_cases(synthetic.make_cohort(2, 1, size, options), folder, seed=size)[0])]
        cases[size] = found[0]
    return cases


def run_case(case: Path, model: Path, encoder: str, explain: bool, reserve: float, args: argparse.Namespace,
             lines: Lines) -> dict[str, Any]:
    lines.lines.clear()
    out = Path(tempfile.mkdtemp(prefix="deadline-bench-"))
    argv = ["--input", str(case), "--output", str(out / "out"), "--model", str(model),
            "--deadline", str(args.deadline), "--deadline-reserve", str(reserve)]
    if explain:
        argv += ["--explain", str(out / "explain")]
    real = features.load_encoder
    if encoder == "slow":
        features.load_encoder = lambda *a, **k: SimulatedEncoder(args.per_patch_s, args.overhead_s)
    try:
        started = time.monotonic()
        status = inference.main(argv)
        finish = time.monotonic() - started
    finally:
        features.load_encoder = real
    extract = lines.json_of("EXTRACT") or {}
    result = lines.json_of("RESULT") or {}
    written = [p.name for p in (out / "out").iterdir()] if (out / "out").is_dir() else []
    value = json.loads((out / "out" / written[0]).read_text()) if written else None
    return {"encoder": encoder, "explain": explain, "reserve_s": reserve, "exit": status, "finish_s": round(finish, 3),
            "finish_minus_deadline_s": round(finish - args.deadline, 3),
            "patches_done": extract.get("done"), "patches_total": extract.get("total"),
            "stopped": extract.get("stopped", "complete"), "batches": extract.get("batches"),
            "pieces": extract.get("pieces"), "provenance": result.get("provenance"),
            "value_finite": isinstance(value, float) and math.isfinite(value),
            "heatmaps": len(list((out / "explain").glob("*.png"))) if explain else None,
            "explain_stopped": any(line.startswith("EXPLAIN s") for line in lines.lines) if explain else None}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for encoder, explain, reserve in sorted({(r["encoder"], r["explain"], r["reserve_s"]) for r in runs}):
        sel = [r for r in runs if (r["encoder"], r["explain"], r["reserve_s"]) == (encoder, explain, reserve)]
        gaps = [r["finish_minus_deadline_s"] for r in sel]
        out[f"{encoder}, explain {'on' if explain else 'off'}, reserve {reserve:g} s"] = {
            "runs": len(sel), "finish_minus_deadline_s": {"min": min(gaps), "median": statistics.median(gaps),
                                                          "max": max(gaps)},
            "after_deadline": sum(g > 0 for g in gaps), "cut": sum(r["stopped"] != "complete" for r in sel),
            "all_outputs_finite": all(r["value_finite"] for r in sel),
            "slides_used": sum("wsi" in (r["provenance"] or "") for r in sel),
            "cases_with_heatmaps": None if not explain else sum(bool(r["heatmaps"]) for r in sel)}
    return out


def synthetic_pool_shift(pool: str, prefix: int, patients: int = 200, patches: int = 2000, dim: int = 8) -> float:
    """Mean shift of a pooled feature when a bag is cut to `prefix` evenly spread patches, in between-patient SDs
    (the generator of test_clock_faults.prefix_shift: patient level, varying spread and tumour fraction)."""
    rng = np.random.default_rng(0)
    full, cut = [], []
    for _ in range(patients):
        bag = rng.normal(size=dim) + rng.uniform(1.0, 2.0) * rng.normal(size=(patches, dim))
        bag[rng.random(patches) < rng.beta(1, 12)] += 2.5
        full.append(pool_bag(bag, [pool]))
        cut.append(pool_bag(bag[rng.permutation(patches)[:prefix]], [pool]))
    full, cut = np.asarray(full), np.asarray(cut)
    return float(np.mean((cut - full).mean(0) / full.std(0)))


def encoder_pool_shift(work: Path, slides: int, prefixes: tuple[int, ...]) -> dict[str, Any]:
    """The same shift on tiny-encoder bags of `slides` synthetic slides (2048 px side, 32 px patches at 0.5 um/px:
    a few hundred patches each), each cut to the progressive prefix a fixed-rate plan keeps (batches of 16),
    against the slide's full bag."""
    from chimera_surv import synthetic
    from chimera_surv.case import SlideInput
    from chimera_surv.features import FeatureRecipe, extract_case_bag
    from chimera_surv.make_cases import write_gc_cases
    from train import demo

    recipe = FeatureRecipe(encoder="test-tiny", weights="seeded", target_mpp=0.5, patch_size=32, min_tissue=0.5,
                           time_budget_s=None, batch_size=16)
    folder = work / "pool_slides"
    if not list(folder.glob("*/inputs.json")):
        options = dataclasses.replace(demo._options(2, "test"), wsi_size=(2048, 2048))
        write_gc_cases(synthetic.make_cohort(2, slides, 3, options), folder, seed=3)
    pools = ("max", "q90", "mean", "std")
    full: list[np.ndarray] = []
    cut: dict[int, list[np.ndarray]] = {k: [] for k in prefixes}
    sizes = []
    for case in sorted(p.parent for p in folder.glob("*/inputs.json")):
        wsi = next((case / "images").glob("*-wsi/*.tif"))
        slide = SlideInput(0, wsi, next((case / "images").glob("tissue-mask/*.tif"), None))
        bag, _ = extract_case_bag([slide], recipe, None)
        sizes.append(len(bag))
        full.append(np.stack([pool_bag(bag.features, [p]) for p in pools]))
        for k in prefixes:  # plan k patches = k/16 batches at 1 patch/s over a k-second budget
            part, _ = extract_case_bag([slide], recipe, None, deadline=Deadline.after(float(k), fixed_rate=1.0))
            cut[k].append(np.stack([pool_bag(part.features, [p]) for p in pools]))
    full_arr = np.asarray(full)
    spread = full_arr.std(0)
    shifts = {f"prefix {k}": {pool: round(float(np.mean((np.asarray(cut[k]) - full_arr).mean(0)[i] / spread[i])), 3)
                              for i, pool in enumerate(pools)} for k in prefixes}
    return {"slides": len(full), "patches_per_slide": {"min": min(sizes), "max": max(sizes)}, **shifts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "deadline.json")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "chimera-deadline-bench")
    parser.add_argument("--deadline", type=float, default=20.0, help="seconds per case (default 20)")
    parser.add_argument("--reserves", type=float, nargs="+", default=[2.0, 14.0],
                        help="--deadline-reserve values (default 2 s: no time for a heatmap after the slides; 14 s: "
                             "room for one at the 10 s prior)")
    parser.add_argument("--per-patch-s", type=float, default=0.1, help="simulated encoder cost per patch")
    parser.add_argument("--overhead-s", type=float, default=0.01, help="simulated encoder cost per call")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="slide sides (px)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--pool-slides", type=int, default=16, help="slides for the encoder pool-shift section")
    args = parser.parse_args(argv)
    started = time.time()
    args.work.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, filename=str(args.work / "bench.log"))
    lines = Lines()
    logging.getLogger().addHandler(lines)
    logging.getLogger().setLevel(logging.INFO)
    model = train_bundle(args.work)
    cases = make_cases(args.work, tuple(args.sizes))
    runs = []
    for _ in range(args.repeats):
        for encoder in ("cpu", "slow"):
            for explain in (False, True):
                for reserve in args.reserves:
                    for size, case in cases.items():
                        run = run_case(case, model, encoder, explain, reserve, args, lines)
                        run["slide_side_px"] = size
                        runs.append(run)
                        print(json.dumps(run), flush=True)
    logging.getLogger().removeHandler(lines)
    pool = {"synthetic bags (200 patients, 2000 patches)": {
        f"prefix {k}": {p: round(synthetic_pool_shift(p, k), 3) for p in ("max", "q90", "mean", "std")}
        for k in (16, 64, 256)}}
    if args.pool_slides > 1:
        pool["tiny-encoder bags, progressive prefix"] = encoder_pool_shift(args.work, args.pool_slides, (16, 64))
    result = {
        "what": "finish time - deadline of whole cases (inference.main in-process, from the call to its return)",
        "machine": {"cpus": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 1),
                    "python": platform.python_version()},
        "settings": {"deadline_s": args.deadline, "reserves_s": args.reserves, "sizes_px": args.sizes,
                     "slow_per_patch_s": args.per_patch_s, "slow_overhead_s": args.overhead_s,
                     "slow_batch_64_s": round(args.overhead_s + 64 * args.per_patch_s, 2), "repeats": args.repeats},
        "summary": summarise(runs),
        "pool_shift_in_between_patient_sds": pool,
        "runs": runs,
        "seconds": round(time.time() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    print(json.dumps(pool, indent=1))
    return 0 if all(v["after_deadline"] == 0 for v in result["summary"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
