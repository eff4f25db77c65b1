"""Issue 23: the cost of `auto` with a network among its candidates, at CHIMERA Task 1 size, on this machine's CPU.

A synthetic cohort in memory shaped like Task 1: `n` patients (default 95), one bag of `patches` x 1,024-d patch
features each (default 3,000, float32), the Task 1 clinical record (synthetic patients, chimera_surv/synthetic) and
an 8-d MRI vector; the planted risk reaches every modality. Measured for ONE training part (4/5 of the patients, as
in a 5-fold CV or a 5-member export): the selection (`select`: every classical family and the network on the
default 5 x 2 inner splits, `train.seeds` networks per inner split) and the refit of the chosen option, with and
without the network (`auto.networks: {abmil: {}}`, the gated-ABMIL defaults). Export = `members` parts and the full
protocol = `folds x repeats` CV parts + one per cohort held out + the export's parts, so both are that many times
one part; that extrapolation is labelled as such. Peak memory is the process's (ru_maxrss), cohort included.
Scaling: the same at other `n` and `patches`.

Run: `nice -n 10 .venv/bin/python benchmarks/auto_networks_cost.py [--points 95x3000 60x3000 95x1000]
[--network-jobs 2] [--device cuda] [--result F]` → benchmarks/results/auto_networks_cost.json (with `--device cuda`
the networks train on the GPU: benchmarks/gpu_checks.sh writes auto_networks_cost_cuda.json); `--whole 95x3000` measures one whole
export instead (benchmarks/results/auto_networks_export.json). Each point runs in its own process. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
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
RESULT = ROOT / "benchmarks" / "results" / "auto_networks_cost.json"
FEATURE_DIM, MRI_DIM = 1024, 8
PARTS_EXPORT, PARTS_PROTOCOL = 5, 5 + 5  # 5 members; 5-fold CV (1 repeat, one cohort: no held-out cohort) + export


def cohort(n: int, patches: int, seed: int, work: Path, networks: bool, network_jobs: int = 1,
           device: str = "cpu") -> Any:
    from chimera_surv import synthetic
    from chimera_surv.readers.clinical import load_schema, parse_clinical
    from train.config import config_hash, load_config
    from train.data import CohortArrays
    from train.protocol import RunContext

    rng = np.random.default_rng(seed)
    patients = synthetic.make_cohort(1, n, seed, synthetic.CohortOptions(with_images=False, with_rna=False))
    schema = load_schema(1)
    z = np.array([p.latent_risk for p in patients])
    z = (z - z.mean()) / (z.std() or 1.0)
    direction = rng.normal(size=FEATURE_DIM).astype(np.float32) / np.sqrt(FEATURE_DIM)
    bags = []
    for v in z:  # a tenth of the patches carry the patient's risk along one direction
        bag = rng.normal(size=(patches, FEATURE_DIM)).astype(np.float32)
        bag[: patches // 10] += np.float32(3.0 * v) * direction * np.sqrt(FEATURE_DIM)
        bags.append(bag)
    data = CohortArrays(case_ids=[p.case_id for p in patients], cohorts=["all"] * n,
                        time=np.array([float(p.time) for p in patients]),
                        event=np.array([int(p.event) for p in patients], dtype=np.int64),
                        label=np.full(n, -1, dtype=np.int64), modalities=["wsi", "mri", "clinical"], bags=bags,
                        records=[parse_clinical(p.clinical, schema) for p in patients],
                        mri=(z[:, None] * 0.5 + rng.normal(size=(n, MRI_DIM))).astype(np.float32),
                        mri_names=[f"m{i}" for i in range(MRI_DIM)])
    auto = {"networks": {"abmil": {}}, "network_jobs": network_jobs} if networks else {}
    config = load_config({"task": 1, "seed": 0, "modalities": ["wsi", "mri", "clinical"], "work_dir": str(work),
                          "recipe": {"encoder": "test-tiny", "weights": "seeded"}, "model": "auto", "auto": auto,
                          "device": device})
    return RunContext(data, schema, config, work, True, config_hash(config))


def one_point(n: int, patches: int, networks: bool, seed: int, work: Path, network_jobs: int = 1,
              device: str = "cpu") -> dict[str, Any]:
    from train.selection import select
    from train.selection.networks import is_network, network_members
    from train.selection.refit import refit

    t0 = time.perf_counter()
    ctx = cohort(n, patches, seed, work, networks, network_jobs, device)
    built = time.perf_counter() - t0
    train = list(range(n - n // 5))
    t0 = time.perf_counter()
    choice = select(ctx, "auto", train, seed)
    select_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    if is_network(choice["chosen"]):
        from train.folds import Split

        network_members(ctx, choice, Split("part", tuple(train), tuple(range(len(train), n))), seed)
    else:
        refit(ctx, "auto", choice, train, seed)
    refit_s = time.perf_counter() - t0
    part = select_s + refit_s
    return {"n": n, "patches": patches, "networks": networks, "network_jobs": network_jobs if networks else None,
            "device": device,
            "chosen": choice["chosen"],
            "scores": choice["scores"], "n_inner_splits": choice["n_inner_splits"],
            "seconds": {"build_cohort": round(built, 1), "select_one_part": round(select_s, 1),
                        "refit_one_part": round(refit_s, 1), "one_part": round(part, 1),
                        "export_extrapolated": round(PARTS_EXPORT * part, 1),
                        "full_protocol_extrapolated": round(PARTS_PROTOCOL * part, 1)},
            **_peak_rss_mb()}


def whole_export(n: int, patches: int, seed: int, work: Path, network_jobs: int, device: str = "cpu") -> dict[str, Any]:
    """The export measured whole, not extrapolated: `fit_classical_members` (every member selects on its own
    training part, networks among the options, and refits its choice) then `export` to a bundle folder."""
    from train.export import export
    from train.protocol import fit_classical_members, member_splits

    ctx = cohort(n, patches, seed, work, True, network_jobs, device)
    t0 = time.perf_counter()
    members = fit_classical_members(ctx, "auto")
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = export(ctx, members, work / "bundle", ctx.config["recipe"], [])
    export_s = time.perf_counter() - t0
    return {"n": n, "patches": patches, "network_jobs": network_jobs, "members": len(member_splits(ctx)),
            "member_choices": {m["split"]: (m.get("auto") or {}).get("chosen") for m in members},
            "bundle_members": len(members),  # a network member counts once per `train.seeds`
            "bundle_mb": round(sum(f.stat().st_size for f in out.iterdir()) / 2**20, 1),
            "seconds": {"fit_members": round(fit_s, 1), "write_bundle": round(export_s, 1),
                        "export_total": round(fit_s + export_s, 1)},
            **_peak_rss_mb()}


def _peak_rss_mb() -> dict[str, float]:
    """This process's peak RSS and the largest worker process's (joblib's loky workers stay alive for reuse, so they
    are shut down first: only reaped children count). Workers map the bags from joblib's memmap files, so their
    RSS counts pages the parent also holds: parent + network_jobs × worker is an upper bound of the total."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)
    return {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_rss_mb_largest_worker": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}


def _machine(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{os.cpu_count()} CPU cores; networks on {torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return f"{os.cpu_count()} CPU cores (shared with other jobs during the run)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", nargs="+", default=["95x3000", "60x3000", "95x1000"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_auto_networks_cost")
    parser.add_argument("--network-jobs", type=int, default=1, help="auto.network_jobs (worker processes)")
    parser.add_argument("--result", type=Path, default=RESULT)
    parser.add_argument("--device", default="cpu", help="where the networks train (the config's `device`: cuda)")
    parser.add_argument("--whole", metavar="NxPATCHES", default=None,
                        help="measure one whole export (networks among the options) at this size instead")
    parser.add_argument("--one", nargs=3, metavar=("N", "PATCHES", "NETWORKS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.whole:
        n, patches = (int(v) for v in args.whole.split("x"))
        result = whole_export(n, patches, args.seed, args.work / f"whole_{args.whole}", args.network_jobs,
                              args.device)
        doc = {"what": "the export of a Task 1-sized bundle with networks among auto's options, measured whole",
               "command": "benchmarks/auto_networks_cost.py " + " ".join(argv or sys.argv[1:]),
               "machine": _machine(args.device), **result}
        args.result.parent.mkdir(parents=True, exist_ok=True)
        args.result.write_text(json.dumps(doc, indent=1) + "\n")
        print(json.dumps(doc, indent=1))
        return 0
    if args.one:
        n, patches, networks = int(args.one[0]), int(args.one[1]), args.one[2] == "1"
        work = args.work / f"{n}x{patches}{'_net' if networks else ''}"
        print("RESULT " + json.dumps(one_point(n, patches, networks, args.seed, work, args.network_jobs,
                                               args.device)))
        return 0
    doc: dict[str, Any] = {"what": __doc__.split("\n\n")[0], "command": "benchmarks/auto_networks_cost.py "
                           + " ".join(argv or sys.argv[1:]),
                           "machine": _machine(args.device),
                           "targets": "export <= 60 min and <= 8 GB peak on 2 CPU cores (issue 23)", "points": []}
    for point in args.points:
        n, patches = (int(v) for v in point.split("x"))
        for networks in (False, True):
            command = [sys.executable, __file__, "--one", str(n), str(patches), "1" if networks else "0",
                       "--seed", str(args.seed), "--work", str(args.work), "--network-jobs", str(args.network_jobs),
                       "--device", args.device]
            done = subprocess.run(command, capture_output=True, text=True, check=False,
                                  env={**os.environ, "OMP_NUM_THREADS": "2"})
            line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
            result = json.loads(line[7:]) if line else {"n": n, "patches": patches, "networks": networks,
                                                         "error": done.stderr.strip().splitlines()[-3:]}
            doc["points"].append(result)
            print(json.dumps(result), flush=True)
            args.result.parent.mkdir(parents=True, exist_ok=True)
            args.result.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"written {args.result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
