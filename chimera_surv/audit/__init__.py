"""InterSHAP audit: modality Shapley values and cross-modal interactions of any trained fusion model."""

from __future__ import annotations

from chimera_surv.audit.estimators import ESTIMATORS, PRIMARY_ESTIMATOR, Estimate, estimate_all
from chimera_surv.audit.intershap import InterSHAPResult, coalition_values, intershap, shapley_from_values
from chimera_surv.audit.maskers import MASKERS, build_masker

__all__ = [
    "ESTIMATORS", "MASKERS", "PRIMARY_ESTIMATOR", "Estimate", "InterSHAPResult", "build_masker",
    "coalition_values", "estimate_all", "intershap", "shapley_from_values",
]
