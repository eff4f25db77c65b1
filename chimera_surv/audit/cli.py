"""``python -m chimera_surv.audit {synthetic,glioma}``: the audit's stand-alone reports (JSON + PNG).

- ``synthetic --out DIR``: the three-regime survival validation (synthetic_validation.py).
- ``glioma --out DIR``: seed 000's published per-patient values re-scored with every named estimator.
Auditing a trained bundle on its cohort is ``report.run_audit`` (called by train/'s audit step), because the
cohort's features and folds live in train/.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from chimera_surv.audit.reference import rescore_glioma
from chimera_surv.audit.synthetic_validation import REGIMES, SyntheticConfig, run_synthetic_validation

DEFAULT_GLIOMA = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "intershap-glioma"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chimera_surv.audit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    syn = sub.add_parser("synthetic", help="three-regime synthetic survival validation")
    syn.add_argument("--out", type=Path, required=True)
    syn.add_argument("--seeds", type=int, nargs="+", default=[0])
    syn.add_argument("--n", type=int, default=None, help="patients per regime")
    syn.add_argument("--epochs", type=int, default=None)
    syn.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=REGIMES)
    gli = sub.add_parser("glioma", help="re-score seed 000's per-patient InterSHAP values")
    gli.add_argument("--out", type=Path, required=True)
    gli.add_argument("--reference", type=Path, default=DEFAULT_GLIOMA)
    args = parser.parse_args(argv)

    if args.command == "synthetic":
        cfg = SyntheticConfig(seeds=tuple(args.seeds))
        if args.n:
            cfg = replace(cfg, n=args.n)
        if args.epochs:
            cfg.train["epochs"] = args.epochs
        report = run_synthetic_validation(cfg, args.out, tuple(args.regimes))
        print(json.dumps({"aggregate": report["aggregate"], "separated": report["separated"],
                          "seconds": report["seconds"]}, indent=1))
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        doc = rescore_glioma(args.reference)
        (args.out / "audit_glioma_reference.json").write_text(json.dumps(doc, indent=1))
        for model, row in doc.items():
            e = row["estimators"]
            print(f"{model:16s} e5_patient_mean {e['e5_patient_mean']['interaction_pct']:.2f} ± "
                  f"{e['e5_patient_mean']['sd_pct']:.2f} | self_ratio_of_means "
                  f"{e['self_ratio_of_means']['interaction_pct']:.2f} | orig_mean_abs "
                  f"{e['orig_mean_abs']['interaction_pct']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
