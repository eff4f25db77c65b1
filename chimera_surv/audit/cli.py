"""``python -m chimera_surv.audit glioma``: the audit's stand-alone report (JSON).

- ``glioma --out DIR``: seed 000's published per-patient values re-scored with every named estimator.
Auditing a trained bundle on its cohort is ``report.run_audit`` (called by train/'s audit step), because the
cohort's features and folds live in train/; so does the synthetic three-regime validation, which trains with
train/'s code (``python -m train.audit_synthetic --out DIR``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chimera_surv.audit.reference import rescore_glioma

DEFAULT_GLIOMA = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "intershap-glioma"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chimera_surv.audit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    gli = sub.add_parser("glioma", help="re-score seed 000's per-patient InterSHAP values")
    gli.add_argument("--out", type=Path, required=True)
    gli.add_argument("--reference", type=Path, default=DEFAULT_GLIOMA)
    args = parser.parse_args(argv)

    if args.command == "glioma":
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
