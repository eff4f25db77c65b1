"""The table route against the folder route on GBSG2, and `.h5` feature cases against slide cases.

Writes benchmarks/results/table_route.json. Run: ``nice .venv/bin/python benchmarks/table_route.py [--quick]``.
1. GBSG2 (scikit-survival, 686 patients; time in months) written once as a CSV and once as the folder layout
   (`<id>/<id>_CD.json` + labels.csv), the same schema; each route trains (`cv` + `fit` + `export`) in a fresh
   process, so its wall time and peak RSS are its own, twice, alternated (folder, table, table, folder); `load_s`
   is the part where the routes differ (reading the cohort into arrays). Both must give the same fold C-indices.
2. A Task 3 bundle whose members read slides (ridge, synthetic cohort, seeded test-tiny encoder): one held-out case
   predicted through inference.py from its slide, and from the `.h5` export of that slide's features, time per case
   (median of `--repeats`, in-process, no feature cache) and the two values.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
AUTO = {"candidates": {"clinical_ridge": {"family": "ridge", "modalities": ["clinical"]},
                       "coxnet": {"family": "coxnet"}, "gbsa": {"family": "gbsa"}},
        "ensembles": [2], "backbone_residual": False, "inner_folds": 3}


def route_child(route: str, folder: Path) -> None:
    """One route in this process: print {wall_s, peak_rss_mb, fold C-indices}."""
    import resource

    from train.__main__ import Run
    from train.config import load_config

    config = json.loads((folder / "config.json").read_text())
    if route == "table":
        config["cohort"] = {"table": str(folder / "gbsg2.csv")}
    else:
        config["cohort"] = {"root": str(folder / "folders"), "labels": {"csv": str(folder / "folders" / "labels.csv")}}
    config["work_dir"] = str(folder / f"work-{route}")
    config["out"] = str(folder / f"bundle-{route}")
    started = time.perf_counter()
    run = Run(load_config(config))
    run.context()  # the cohort read into arrays: the only part where the routes differ
    loaded = time.perf_counter()
    records, _ = run.cv()
    run.export()
    wall = time.perf_counter() - started
    folds = {r["split"]: r["metric"] for r in records if r["arch"] == "model"}
    print(json.dumps({"wall_s": round(wall, 2), "load_s": round(loaded - started, 3), "peak_rss_mb": round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "fold_c": folds, "patients": len(run.patients)}))


def routes(folder: Path, quick: bool) -> dict:
    import pandas as pd
    from sksurv.datasets import load_gbsg2

    from train.table import infer_schema, to_folder_layout

    X, y = load_gbsg2()
    frame = X.assign(time=y["time"] / 30.4375, event=y["cens"].astype(int))
    frame.insert(0, "case_id", [f"p{i:03d}" for i in range(len(frame))])
    frame = frame.iloc[:200] if quick else frame
    roles = {"id": "case_id", "time": "time", "event": "event", "label": None, "cohort": None}
    (folder / "schema.json").write_text(json.dumps(infer_schema(frame, roles)))
    frame.to_csv(folder / "gbsg2.csv", index=False)
    to_folder_layout(pd.read_csv(folder / "gbsg2.csv"), folder / "folders", roles)
    config = {"task": "survival", "schema": str(folder / "schema.json"), "auto": AUTO,
              "protocol": {"folds": 5, "repeats": 1, "members": 5, "cohort_holdout": False}}
    (folder / "config.json").write_text(json.dumps(config))
    runs: dict[str, list[dict]] = {"folder": [], "table": []}
    for route in ("folder", "table", "table", "folder")[: 2 if quick else 4]:  # alternated: a busy machine drifts
        shutil.rmtree(folder / f"work-{route}", ignore_errors=True)
        done = subprocess.run([sys.executable, __file__, "--child", route, str(folder)], capture_output=True,
                              text=True, check=False, cwd=ROOT)
        if done.returncode:
            raise RuntimeError(f"the {route} route failed:\n{done.stderr[-3000:]}")
        runs[route].append(json.loads(done.stdout.strip().splitlines()[-1]))
    out: dict = {route: {**items[0], "wall_s_runs": [r["wall_s"] for r in items],
                         "load_s_runs": [r["load_s"] for r in items],
                         "peak_rss_mb": max(r["peak_rss_mb"] for r in items)} for route, items in runs.items()}
    a, b = out["table"]["fold_c"], out["folder"]["fold_c"]
    out["same_fold_c"] = sorted(a) == sorted(b) and all(abs(a[k] - b[k]) < 1e-12 for k in a)
    out["mean_fold_c"] = round(statistics.mean(a.values()), 4)
    out["table_over_folder_wall_min"] = round(min(out["table"]["wall_s_runs"]) / min(out["folder"]["wall_s_runs"]), 3)
    out["table_over_folder_load_min"] = round(min(out["table"]["load_s_runs"]) / min(out["folder"]["load_s_runs"]), 3)
    return out


def cases(folder: Path, repeats: int) -> dict:
    import logging

    import inference
    from chimera_surv import synthetic
    from chimera_surv.bundle import load_bundle
    from chimera_surv.features import extract_case_bag
    from chimera_surv.gc import read_case
    from chimera_surv.make_cases import write_gc_cases
    from chimera_surv.tasks import TASKS
    from train import demo
    from train.h5features import export_bag, slide_stem

    logging.disable(logging.WARNING)
    model = folder / "model"
    demo.train_task(3, folder / "work", model, 36, seed=0, overrides={"model": {"family": "ridge"}},
                    steps=("extract", "fit", "export"))
    bundle = load_bundle(model / TASKS[3].name)
    options = dataclasses.replace(demo._options(3, "test"), wsi_size=(4096, 3072))
    case = Path(write_gc_cases(synthetic.make_cohort(3, 1, 7, options), folder / "slide-case", seed=7)[0])
    slides = read_case(case).slides
    bag, _ = extract_case_bag(slides, bundle.recipe, model / "encoders")
    h5_case = Path(shutil.copytree(case, folder / "h5-case"))
    slide_dir = slides[0].wsi.parent.relative_to(case)
    for tif in (h5_case / slide_dir).glob("*.tif"):
        tif.unlink()
    export_bag(bag.features, bag.coords, bundle.recipe, h5_case / slide_dir, [slide_stem(s.wsi) for s in slides])
    out = {"patches": len(bag.features), "slide_px": list(options.wsi_size), "encoder": bundle.recipe.encoder}
    for name, path in (("slide", case), ("h5", h5_case)):
        times, values = [], []
        for k in range(repeats):
            started = time.perf_counter()
            inference.main(["--input", str(path), "--output", str(folder / f"out-{name}{k}"), "--model", str(model)])
            times.append(time.perf_counter() - started)
            values.append(json.loads((folder / f"out-{name}{k}" / TASKS[3].output_file).read_text()))
        out[name] = {"median_s_per_case": round(statistics.median(times), 3), "value_months": values[0]}
    out["same_value"] = abs(out["slide"]["value_months"] - out["h5"]["value_months"]) <= 1e-5 * max(
        1.0, abs(out["slide"]["value_months"]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 patients (a smoke run, not the reported one)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("ROUTE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        route_child(args.child[0], Path(args.child[1]))
        return 0
    with tempfile.TemporaryDirectory(prefix="table-route-") as tmp:
        folder = Path(tmp)
        result = {"machine": {"cpus": len(__import__("os").sched_getaffinity(0)), "python": platform.python_version()},
                  "auto": AUTO, "gbsg2": routes(folder, args.quick), "h5_vs_slide": cases(folder, args.repeats)}
    target = ROOT / "benchmarks" / "results" / ("table_route_quick.json" if args.quick else "table_route.json")
    target.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
