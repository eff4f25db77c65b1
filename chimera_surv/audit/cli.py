"""``python -m chimera_surv.audit glioma``: the audit's stand-alone report (JSON).

- ``glioma --reference DIR --out DIR``: seed 000's published per-patient values re-scored with every named
  estimator. DIR holds the ``intershap_*.csv`` analysis outputs of the public repository iainswift/intershap-glioma
  (not shipped: that repository has no licence file).
Auditing a trained bundle on its cohort is ``report.run_audit`` (called by train/'s audit step), because the
cohort's features and folds live in train/; so does the synthetic three-regime validation, which trains with
train/'s code (``python -m train.audit_synthetic --out DIR``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chimera_surv.audit.reference import GLIOMA_MODELS, rescore_glioma


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chimera_surv.audit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    gli = sub.add_parser("glioma", help="re-score seed 000's per-patient InterSHAP values")
    gli.add_argument("--out", type=Path, required=True)
    gli.add_argument("--reference", type=Path, required=True,
                     help="folder with intershap_{cross_attention,bilinear,gated}.csv (iainswift/intershap-glioma)")
    args = parser.parse_args(argv)

    if args.command == "glioma":
        missing = [name for name in GLIOMA_MODELS.values() if not (args.reference / name).is_file()]
        if missing:
            parser.error(f"--reference {args.reference}: {missing[0]} not found (the folder needs "
                         f"{', '.join(GLIOMA_MODELS.values())})")
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
