"""Command line for synthetic cases: the grand-challenge input layout or the CHIMERA training layout.

The writers live in `synthetic/layouts.py`; their names are re-exported here for the callers that import them
from this module.

    python -m chimera_surv.make_cases --layout gc --task 1 2 3 --n 2 --out test/input --seed 0
    python -m chimera_surv.make_cases --layout training --task 3 --n 120 --out /tmp/t3 --genes 2000
    python -m chimera_surv.make_cases --layout training --task 3 --n 60 --out /tmp/t3b --site A=all
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from chimera_surv import synthetic
from chimera_surv.synthetic import CohortOptions, SyntheticPatient
from chimera_surv.synthetic.layouts import (  # noqa: F401  (re-exported)
    STREAM_FIRST_ID,
    UUID_NAMESPACE,
    Socket,
    mri_name,
    prostate_slide_sockets,
    slide_names,
    write_gc_case,
    write_gc_cases,
    write_labels_csv,
    write_training_case,
    write_training_cohort,
)

# ------------------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def _site(text: str) -> tuple[str, synthetic.SiteEffects]:
    cohort, _, spec = text.partition("=")
    name, _, strength = spec.partition(":")
    return cohort, synthetic.site_effects(name, float(strength) if strength else 1.0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chimera_surv.make_cases", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--layout",
        choices=["gc", "training"],
        required=True,
        help="gc: one grand-challenge job folder per case; training: the organisers' cohort layout",
    )
    parser.add_argument("--task", type=int, nargs="+", choices=list(synthetic.TASK_IDS), required=True)
    parser.add_argument("--n", type=int, default=2, help="patients per task")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--slides",
        type=int,
        nargs="+",
        default=None,
        help="Task 1 slides per case, cycled (gc default: 1 2 3, and at least one case each; "
        "training default: 1-3 at random)",
    )
    parser.add_argument("--wsi-size", type=_size, default=(3072, 2048), help="level-0 WIDTHxHEIGHT")
    parser.add_argument("--mpp", type=float, default=0.25, help="level-0 µm/px of the slides")
    parser.add_argument("--mask-mpp", type=float, default=4.0, help="µm/px of the tissue masks")
    parser.add_argument(
        "--genes",
        type=int,
        default=None,
        help="Task 3 RNA panel size (default: all 19,359 genes; the z-module is always kept)",
    )
    parser.add_argument("--no-images", action="store_true", help="training layout without slides or MRI")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--overwrite", action="store_true", help="training: replace an existing cohort")
    parser.add_argument(
        "--site",
        type=_site,
        nargs="+",
        default=None,
        metavar="COHORT=EFFECT[:STRENGTH]",
        help=f"site effects per cohort label (A, B; '' for Task 1, as '=all'); effects: {synthetic.SITE_EFFECTS}",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.layout == "training" and len(args.task) != 1:
        print("--layout training writes one cohort: give exactly one --task", file=sys.stderr)
        return 2
    stream = "test" if args.layout == "gc" else "training"
    genes = tuple(synthetic.gene_panel(args.genes)) if 3 in args.task else None
    started = time.perf_counter()
    for task in args.task:
        slides = tuple(args.slides) if args.slides else ((1, 2, 3) if args.layout == "gc" else None)
        n = max(args.n, len(slides)) if (task == 1 and args.layout == "gc" and slides) else args.n
        options = CohortOptions(
            wsi_size=args.wsi_size,
            mpp=args.mpp,
            mask_mpp=args.mask_mpp,
            slides_per_case=slides,
            genes=genes,
            with_images=not args.no_images,
            stream=stream,
            first_id=STREAM_FIRST_ID[stream],
            sites=dict(args.site) if args.site else None,
        )
        patients = synthetic.make_cohort(task, n, args.seed, options)
        if args.layout == "gc":
            write_gc_cases(patients, args.out, args.seed, args.workers)
            where = args.out
        else:
            where = write_training_cohort(patients, args.out, args.workers, args.overwrite)
        print(f"task {task}: {len(patients)} {args.layout} cases in {where} — {_oracle_line(patients)}")
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


def _oracle_line(patients: list[SyntheticPatient]) -> str:
    try:
        if patients[0].task == 2:
            positives = sum(p.brs3 or 0 for p in patients)
            return f"BRS3 {positives}/{len(patients)}, oracle AUC {synthetic.oracle_auc(patients):.3f}"
        events = sum(p.event or 0 for p in patients)
        return f"events {events}/{len(patients)}, oracle C {synthetic.oracle_c_index(patients):.3f}"
    except ValueError as error:  # too few cases for a metric is normal for a demo sample
        return f"oracle n/a ({type(error).__name__})"


if __name__ == "__main__":
    raise SystemExit(main())
