"""Classical survival families a bundle member can hold: penalised linear models, exported tree ensembles, pooled
slide-bag summaries, and parts combined by fixed weights (clinical backbone + residual, cross-family ensembles).

Why: with 95-176 training patients a well-regularised classical model is the strong baseline (issue 9); these are
pure numpy predictors rebuilt from JSON + arrays (safetensors), never from pickles.
"""

from chimera_surv.classical.design import DesignBlock, pool_bag
from chimera_surv.classical.model import ClassicalModel, Part
from chimera_surv.classical.predictors import PREDICTORS, LinearPredictor, TreeEnsemblePredictor

__all__ = [
           "PREDICTORS",
           "ClassicalModel",
           "DesignBlock",
           "LinearPredictor",
           "Part",
           "TreeEnsemblePredictor",
           "pool_bag",
]
