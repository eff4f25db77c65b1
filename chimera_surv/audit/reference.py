"""Seed 000's published per-patient InterSHAP values, re-scored with every named estimator.

Why: the seed's Table 1 (3.03 ± 2.64, 3.72 ± 3.16, 4.45 ± 4.94) is eq. 5 applied per patient, while its MLP
figure (4.82%) uses a ratio of means over main effects. Re-scoring the same per-patient phi columns with one
consistent estimator shows what the comparison looks like when it is not mixed (seed-methods.md §1.4).
The files are the public analysis outputs of iainswift/intershap-glioma; that repository has no licence file, so
they are not shipped: pass their folder (`--reference DIR`); the tests that need them are optional (`reference`).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from chimera_surv.audit.estimators import estimate_all, matrix_from_two_modality_shapley

GLIOMA_MODELS = {"cross_attention": "intershap_cross_attention.csv", "bilinear": "intershap_bilinear.csv",
                 "gated": "intershap_gated.csv"}
SEED_TABLE1 = {"cross_attention": (3.03, 2.64), "bilinear": (3.72, 3.16), "gated": (4.45, 4.94)}
SEED_MLP_SELF_RATIO = 4.82  # hard-coded in the seed's comparison script; the per-patient phi are not published


def load_glioma_phi(path: Path) -> dict[str, np.ndarray]:
    """phi_wsi, phi_rna, phi_interaction and the published pct_interaction columns of one CSV."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    cols = ["phi_wsi", "phi_rna", "phi_interaction", "pct_interaction", "pct_wsi", "pct_rna"]
    return {c: np.array([float(r[c]) for r in rows]) for c in cols}


def rescore_glioma(reference_dir: Path) -> dict[str, dict[str, Any]]:
    """Every estimator (interaction %, SD, shares) for each of the seed's three attention models."""
    out: dict[str, dict[str, Any]] = {}
    for model, fname in GLIOMA_MODELS.items():
        d = load_glioma_phi(Path(reference_dir) / fname)
        matrix = matrix_from_two_modality_shapley(d["phi_wsi"], d["phi_rna"], d["phi_interaction"])
        out[model] = {"n_patients": int(matrix.shape[0]), "seed_table1": SEED_TABLE1[model],
                      "estimators": {k: e.to_dict() for k, e in estimate_all(matrix, ["wsi", "rna"]).items()}}
    return out
