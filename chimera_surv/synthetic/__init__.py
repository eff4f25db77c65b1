"""Synthetic CHIMERA patients: one latent risk per patient shapes every modality it carries.

Why: no real CHIMERA data may ship with the project, yet the container, the training code and the demo need cases
that look like the real ones (file formats, clinical key/value conventions, time and censoring) and carry a known
signal, so a trained model can be compared with an oracle. The subpackage has one module per job:

    common.py    the fixed world (seeds, keyed generators, gene hashes) and the reference data
    clinical.py  clinical records from z          rna.py     the RNA world (genes, module, programs)
    patients.py  outcomes, SyntheticPatient, cohorts, oracles
    render.py    slide and MRI renderers (arrays, no file I/O)
    site.py      per-cohort site effects (stain, blur, JPEG, RNA platform, clinical mix)
    layouts.py   the two on-disk layouts (grand-challenge jobs, the training cohort); the CLI is make_cases.py

Two seeds: the *world* is fixed, so cohorts drawn with different seeds share one biology and a model trained on
one transfers to another; the *cohort seed* draws the patients. See docs/synthetic.md.
"""

from __future__ import annotations

from chimera_surv.synthetic.clinical import (
    GLEASON_BY_ISUP,
    bladder_clinical,
    brs3_intercept,
    task1_clinical,
    task1_labels,
)
from chimera_surv.synthetic.common import (
    BRS3_PREVALENCE,
    COHORT_B_FRACTION,
    PROJECT_ROOT,
    TASK_IDS,
    WORLD_SEED,
    load_censoring_times,
    load_gene_order,
)
from chimera_surv.synthetic.patients import (
    COHORT_STAIN,
    TIME_MODEL,
    CohortOptions,
    SyntheticPatient,
    TimeModel,
    make_cohort,
    mri_params,
    oracle_auc,
    oracle_c_index,
    slide_params,
)
from chimera_surv.synthetic.render import (
    BACKGROUND_RGB,
    EOSIN_OD,
    HEMATOXYLIN_OD,
    MRIParams,
    SlideParams,
    Volume,
    render_mri,
    render_slide,
)
from chimera_surv.synthetic.rna import MODULE_SIZE, N_PROGRAMS, RNAWorld, gene_panel, module_genes
from chimera_surv.synthetic.site import SITE_EFFECTS, SiteEffects, site_effects

__all__ = [
    "BACKGROUND_RGB", "BRS3_PREVALENCE", "COHORT_B_FRACTION", "COHORT_STAIN", "EOSIN_OD", "GLEASON_BY_ISUP",
    "HEMATOXYLIN_OD", "MODULE_SIZE", "N_PROGRAMS", "PROJECT_ROOT", "SITE_EFFECTS", "TASK_IDS",
    "TIME_MODEL", "WORLD_SEED", "CohortOptions", "MRIParams", "RNAWorld", "SiteEffects", "SlideParams",
    "SyntheticPatient", "TimeModel", "Volume", "bladder_clinical", "brs3_intercept", "gene_panel",
    "load_censoring_times", "load_gene_order", "make_cohort", "module_genes", "mri_params", "oracle_auc",
    "oracle_c_index", "render_mri", "render_slide", "site_effects", "slide_params", "task1_clinical",
    "task1_labels",
]
