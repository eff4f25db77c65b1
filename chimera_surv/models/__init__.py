"""Survival networks: modality encoders (incl. MIL), fusions, heads, assembled from a JSON config."""

from __future__ import annotations

from chimera_surv.models.fusion import FUSIONS
from chimera_surv.models.heads import HEADS
from chimera_surv.models.modality import MODALITY_ENCODERS
from chimera_surv.models.network import PRESETS, SurvivalNetwork, build_network, count_parameters, preset

__all__ = ["FUSIONS", "HEADS", "MODALITY_ENCODERS", "PRESETS", "SurvivalNetwork", "build_network",
           "count_parameters", "preset"]
