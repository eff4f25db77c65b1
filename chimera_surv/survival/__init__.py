"""Survival losses, metrics, discretisation and risk→output calibration (no model code here)."""

from __future__ import annotations

from chimera_surv.survival.calibration import CALIBRATIONS, calibration_from_dict
from chimera_surv.survival.losses import LOSSES, bce_loss, cox_ph_loss, deephit_loss
from chimera_surv.survival.metrics import bootstrap_ci, harrell_c, integrated_brier, td_auc, uno_c

__all__ = [
    "CALIBRATIONS", "LOSSES", "bce_loss", "bootstrap_ci", "calibration_from_dict", "cox_ph_loss",
    "deephit_loss", "harrell_c", "integrated_brier", "td_auc", "uno_c",
]
