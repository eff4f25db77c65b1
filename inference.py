#!/usr/bin/env python
"""Grand-challenge entrypoint: one patient from /input, one finite JSON number to /output.

    python inference.py [--input /input] [--output /output] [--model /opt/ml/model] [--deadline SECONDS]
                        [--explain DIR]

Exit status is non-zero only when the output cannot be written or the input folder does not exist (a user
error: the platform always provides /input); every other problem is logged as a DEGRADED line
and answered with a degraded prediction (see chimera_surv/predict.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from chimera_surv.cli import Parser, one_line
from chimera_surv.deadline import (
    DEADLINE_ENV,
    RATE_ENV,
    RESERVE_ENV,
    CaseClock,
    ClockInputError,
    clock_settings,
)
from chimera_surv.errors import describe
from chimera_surv.gc import UnknownTaskError, all_tasks, write_output
from chimera_surv.predict import Prediction, explain_after_output, predict_case

log = logging.getLogger("inference")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, default=Path("/input"), help="case folder holding inputs.json")
    parser.add_argument("--output", type=Path, default=Path("/output"), help="folder for the output JSON")
    parser.add_argument("--model", type=Path, default=Path("/opt/ml/model"), help="bundles and encoder weights")
    parser.add_argument("--cache", type=Path, default=None, help="feature cache (default: none; /tmp is scratch)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--explain", type=Path, default=None,
                        help="also write slide heatmaps (attention or occlusion) and a case page here (off by default; "
                             "never fails the case)")
    # --- deadline (docs/features.md, "Deadline"): changeable at run time, no retraining ---
    # parsed and bounded once, in main (deadline.clock_settings): a refused value is one `error:` line, exit 2
    parser.add_argument("--deadline", default=None, metavar="SECONDS",
                        help=f"seconds for the whole case, > 0, over 86400 clamped (default: ${DEADLINE_ENV}, else no "
                             "limit; 0 or a negative value is refused, not read as no limit); slide extraction stops "
                             "in time and keeps an evenly spread prefix of the patches; MRI, RNA and --explain run "
                             f"only if they fit. ${RATE_ENV} (patches/s) plans from a fixed rate")
    parser.add_argument("--deadline-reserve", default=None, metavar="SECONDS",
                        help=f"seconds >= 0 kept for the rest of the case after the slides (default: ${RESERVE_ENV}, "
                             "else 60; a tenth of the deadline when not shorter than it)")
    return parser.parse_args(argv)


def start_case(args: argparse.Namespace, clock: CaseClock | None = None) -> str | None:
    """The startup line (device, GPU, driver, CUDA, torch) and the case deadline; returns the device to use.

    The clock counts from `main`'s first line; the imports before it are covered by the reserve.
    """
    try:
        from chimera_surv.device import resolve_device

        device = str(resolve_device(args.device))
    except Exception as exc:  # noqa: BLE001 - a broken torch costs the slides, not the case
        log.warning("DEGRADED %s", json.dumps({"stage": "device", "cause": f"{type(exc).__name__}: {exc}",
                                               "action": "no device check; each modality tries on its own"}))
        device = args.device
    if clock is not None and clock.limited:
        log.info("DEADLINE %s", json.dumps({"case_s": clock.seconds, "slides_s": round(clock.slides_seconds(), 1),
                                            "fixed_rate_per_s": clock.patch_rate}))
    return device


def check_writable(output_dir: Path) -> None:
    """Fail early and clearly if /output cannot take a file: the only fatal error of a job."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".probe."):
        pass


def run_case(input_dir: Path, output_dir: Path, model_dir: Path, cache_dir: Path | None = None,
             device: str | None = None, explain_dir: Path | None = None,
             clock: CaseClock | None = None) -> Prediction | None:
    """Predict one case and write its output file; what `main` does after parsing arguments.

    `clock` (None: no limit) bounds the slides, MRI and RNA; `--explain` runs only after the output is written,
    and only the parts that fit before the end of the case.

    Returns the prediction, or None when the task could not be told (every task's constant is then written).
    Raises OSError only when the output cannot be written.
    """
    check_writable(output_dir)
    try:
        prediction = predict_case(input_dir, model_dir, cache_dir=cache_dir, device=device,
                                  explain_dir=explain_dir, clock=clock)
    except Exception as exc:  # noqa: BLE001 - UnknownTaskError, or an input tree that cannot even be listed
        # Without a task we cannot name the output socket: answer every task's file with its constant.
        cause = str(exc) if isinstance(exc, UnknownTaskError) else describe(exc)
        log.warning("DEGRADED %s", json.dumps({"stage": "input", "cause": cause,
                                               "action": "writing every task's constant"}, sort_keys=True))
        for task in all_tasks():
            write_output(output_dir, task, task.fallback_value)
        return None
    path = write_output(output_dir, prediction.task, prediction.value)
    from chimera_surv.meaning import value_meaning

    log.info("RESULT %s", json.dumps({
        "task": prediction.task.id, "case": prediction.case_id, "value": prediction.value,
        **value_meaning(prediction.task.id, prediction.task.output_kind),  # unit and meaning of the value
        **prediction.details,  # S(t) at the bundle's horizons, median months, the model (bundle predictions only)
        "provenance": prediction.provenance(), "degraded": len(prediction.degraded),
        "seconds": round(prediction.seconds, 3), "peak_rss_mb": round(prediction.peak_rss_mb, 1),
        "output": str(path)}, sort_keys=True))
    explain_after_output(prediction, clock)  # optional work starts only once the output is written
    return prediction


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout)
    try:  # every time input parsed and bounded once, here
        settings = clock_settings(args.deadline, args.deadline_reserve, os.environ)
    except ClockInputError as exc:  # a time input that cannot be meant: refused before any work
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.input.is_dir():  # a typo, not a degraded case: the never-fail chain is for what is inside it
        print(f"error: --input: {args.input} does not exist or is not a folder", file=sys.stderr)
        return 2
    for note in settings.notes:
        log.warning("DEADLINE %s", note)
    clock = CaseClock.start(settings, started)
    try:
        device = start_case(args, clock)
        run_case(args.input, args.output, args.model, cache_dir=args.cache, device=device,
                 explain_dir=args.explain, clock=clock)
    except OSError as exc:
        print(f"error: --output: {args.output} is not writable ({one_line(exc)})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
