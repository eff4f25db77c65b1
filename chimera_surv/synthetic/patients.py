"""Latent patients: outcomes, the patient record, image parameters from z, cohorts and oracles.

Patient i depends only on (stream, task, seed, i), never on n; see docs/synthetic.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from chimera_surv.synthetic.clinical import (
    _noisy,
    bladder_clinical,
    brs3_intercept,
    task1_clinical,
    task1_labels,
)
from chimera_surv.synthetic.common import (
    COHORT_B_FRACTION,
    TASK_IDS,
    WORLD_SEED,
    _rng,
    _sigmoid,
    _stable_hash,
    load_censoring_times,
    load_gene_order,
)
from chimera_surv.synthetic.render import MRIParams, SlideParams
from chimera_surv.synthetic.rna import _rna_world
from chimera_surv.synthetic.site import SiteEffects

# ------------------------------------------------------------------------------------------------------------
# Time model: mixture cure model, fitted to bladder-rec.csv (see docs/synthetic.md)
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeModel:
    """P(susceptible | z) = sigmoid(a + b z); susceptible event time = shift + LogNormal(mu - c z, s);
    censoring = a time of the censoring stand-in, `load_censoring_times()` (jittered, scaled by `censor_scale`).

    The cure fraction reproduces the real Kaplan-Meier plateau (S ≈ 0.57); parameters were fitted by
    simulation (20,000 draws, Nelder-Mead) to the real event rate 36%, event-time quartiles 9.75/14/41 and
    censored median 91, then `a`, `mu`, `censor_scale` hand-tuned on 24,000 draws (36% events, medians 14
    and 90). The real event times have a longer tail (upper quartile 41 vs ~27 here); oracle C ≈ 0.77.
    """

    a: float = -0.55
    b: float = 1.24
    mu: float = 3.0
    c: float = 0.87
    s: float = 1.20
    shift: float = 4.0
    censor_scale: float = 1.02
    censor_jitter: float = 4.0

    def sample(self, z: float, rng: np.random.Generator, censoring: np.ndarray) -> tuple[float, int]:
        """(observed time in months, event 0/1) for one patient."""
        susceptible = rng.random() < _sigmoid(self.a + self.b * z)
        event_time = self.shift + math.exp(self.mu - self.c * z + self.s * rng.standard_normal())
        censor = float(rng.choice(censoring)) + rng.uniform(-self.censor_jitter, self.censor_jitter)
        censor = max(6.0, censor * self.censor_scale)
        if susceptible and event_time <= censor:
            return event_time, 1
        return censor, 0


TIME_MODEL = TimeModel()



# ------------------------------------------------------------------------------------------------------------
# The patient
# ------------------------------------------------------------------------------------------------------------


@dataclass
class SyntheticPatient:
    """One synthetic patient. `clinical` holds the input keys only; `labels` the training-only keys in the
    same JSON conventions (merged into the clinical JSON of the training layout, never into a grand-challenge
    case). `time`/`event` for Tasks 1 and 3, `brs3` (0/1) for Task 2."""

    case_id: str
    task: int
    cohort: str  # "A"/"B" for bladder cohorts, "" for Task 1
    latent_risk: float
    clinical: dict[str, Any]
    labels: dict[str, Any]
    rna: dict[str, float] | None = None
    slides: list[SlideParams] = field(default_factory=list)
    mri: MRIParams | None = None
    time: float | None = None
    event: int | None = None
    brs3: int | None = None
    modality_views: dict[str, float] = field(default_factory=dict)  # each modality's noisy view of z

    def training_clinical(self) -> dict[str, Any]:
        return {**self.clinical, **self.labels}

    def expected(self) -> dict[str, Any]:
        """What the demo compares predictions with (never read by inference)."""
        out: dict[str, Any] = {
            "case_id": self.case_id,
            "task": self.task,
            "cohort": self.cohort,
            "latent_risk": round(self.latent_risk, 6),
            "modality_views": {k: round(v, 6) for k, v in self.modality_views.items()},
        }
        if self.task == 2:
            out["brs3"] = self.brs3
        else:
            out["time"] = self.time
            out["event"] = self.event
        return out



# ------------------------------------------------------------------------------------------------------------
# Image parameters from z
# ------------------------------------------------------------------------------------------------------------

COHORT_STAIN = {"": (0.0, 0.0, 0.0), "A": (0.0, 0.0, 0.0), "B": (0.04, -0.02, 0.03)}  # OD offsets


def slide_params(
    z: float,
    rng: np.random.Generator,
    seed: int,
    cohort: str,
    kind: str,
    size: tuple[int, int],
    mpp: float,
    mask_mpp: float,
) -> SlideParams:
    """Nuclear density/size and stain intensity rise with z; gland lumens shrink (less differentiation)."""
    zs = z + 0.25 * rng.standard_normal()  # slide-level heterogeneity on top of the patient's WSI view
    jitter = tuple(float(x) for x in 0.02 * rng.standard_normal(3))
    return SlideParams(
        seed=seed,
        width=size[0],
        height=size[1],
        mpp=mpp,
        mask_mpp=mask_mpp,
        kind=kind,
        nuclear_density=float(4.0 * math.exp(0.35 * zs)),
        nuclear_radius_um=float(3.0 * math.exp(0.08 * zs)),
        large_nuclei_fraction=float(_sigmoid(-1.5 + 0.8 * zs)),
        hematoxylin=float(1.0 + 0.15 * zs),
        stroma_hematoxylin=float(max(0.0, 0.10 + 0.04 * zs)),
        lumen_fraction=float(0.25 * _sigmoid(-1.0 * zs)),
        stain_shift=tuple(a + b for a, b in zip(COHORT_STAIN[cohort], jitter, strict=True)),  # type: ignore[arg-type]
    )


def mri_params(z: float, rng: np.random.Generator, seed: int) -> MRIParams:
    """Smaller glands (higher PSA density), larger lesions with lower ADC for higher z."""
    return MRIParams(
        seed=seed,
        prostate_volume_ml=float(np.clip(40 * math.exp(-0.15 * z + 0.3 * rng.standard_normal()), 15, 90)),
        lesion_diameter_mm=float(np.clip(8 * math.exp(0.25 * z + 0.2 * rng.standard_normal()), 4, 22)),
        lesion_adc=float(np.clip(1150 - 180 * z + 80 * rng.standard_normal(), 450, 1600)),
        lesion_t2_factor=float(np.clip(0.65 - 0.06 * z + 0.04 * rng.standard_normal(), 0.35, 0.95)),
        lesion_hbv_factor=float(np.clip(1.8 + 0.35 * z + 0.15 * rng.standard_normal(), 1.0, 4.0)),
    )


# ------------------------------------------------------------------------------------------------------------
# Cohorts
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CohortOptions:
    """Knobs of a cohort. `with_images=False` skips image parameters (for fast outcome-only cohorts);
    `slides_per_case` cycles over its values for Task 1 (None = 1-3 at random)."""

    wsi_size: tuple[int, int] = (3072, 2048)
    mpp: float = 0.25
    mask_mpp: float = 4.0
    slides_per_case: tuple[int, ...] | None = None
    genes: tuple[str, ...] | None = None  # None = the full 19,359-gene list
    cohort_b_fraction: float | None = None  # None = the public training share
    with_images: bool = True
    with_rna: bool = True
    first_id: int = 1
    stream: str = "training"  # "training" or "test": the same seed draws different patients per stream
    modality_signal: float = 0.75  # correlation of each image/RNA modality's view of z with z itself
    # cohort label ("A", "B", "" for Task 1) → that site's effects (synthetic/site.py); None = clean
    sites: dict[str, SiteEffects] | None = None

    def site(self, cohort: str) -> SiteEffects | None:
        return (self.sites or {}).get(cohort)

    def stream_key(self) -> int:
        return _stable_hash(f"stream:{self.stream}") % 2**31


def _case_id(task: int, cohort: str, number: int) -> str:
    if task == 1:
        return str(1000 + number)  # numeric strings like the real "1003"
    return f"{task}{cohort}_{number:03d}"


def make_cohort(task: int, n: int, seed: int, options: CohortOptions | None = None) -> list[SyntheticPatient]:
    """Draw `n` patients of `task`. Deterministic in (task, seed, index); cohorts A/B interleave so that any
    prefix holds both (Tasks 2, 3)."""
    if task not in TASK_IDS:
        raise ValueError(f"task must be one of {TASK_IDS}, got {task}")
    options = options or CohortOptions()
    b_fraction = COHORT_B_FRACTION[task] if options.cohort_b_fraction is None else options.cohort_b_fraction
    censoring = load_censoring_times()
    genes = None
    if task == 3 and options.with_rna:
        genes = tuple(options.genes) if options.genes is not None else tuple(load_gene_order())
    counters = {"A": options.first_id - 1, "B": options.first_id - 1, "": options.first_id - 1}
    key = (WORLD_SEED, options.stream_key(), seed, task)
    patients = []
    for index in range(n):
        rng = _rng(*key, index)
        cohort = "" if task == 1 else ("B" if rng.random() < b_fraction else "A")
        counters[cohort] += 1
        patients.append(
            _make_patient(
                key, index, _case_id(task, cohort, counters[cohort]), cohort, rng, censoring, genes, options
            )
        )
    return patients


def _make_patient(
    key: tuple[int, ...],
    index: int,
    case_id: str,
    cohort: str,
    rng: np.random.Generator,
    censoring: np.ndarray,
    genes: tuple[str, ...] | None,
    options: CohortOptions,
) -> SyntheticPatient:
    task = key[-1]
    z = float(rng.standard_normal())
    patient = SyntheticPatient(
        case_id=case_id, task=task, cohort=cohort, latent_risk=z, clinical={}, labels={}
    )
    # Independent sub-streams, so e.g. changing the RNA panel never changes a patient's clinical record.
    outcome_rng, clinical_rng, rna_rng, image_rng = (_rng(*key, index, k) for k in range(4))
    if task == 2:
        patient.brs3 = int(outcome_rng.random() < _sigmoid(brs3_intercept() + 2.0 * z))
        patient.clinical = bladder_clinical(z, clinical_rng, task)
        brs = "BRS3" if patient.brs3 else str(outcome_rng.choice(["BRS1", "BRS2"]))
        patient.labels = {"BRS": brs}
    else:
        time, event = TIME_MODEL.sample(z, outcome_rng, censoring)
        if task == 1:
            patient.time, patient.event = round(time, 1), event
            patient.clinical = task1_clinical(z, clinical_rng)
            patient.labels = task1_labels(time, event, outcome_rng)
        else:
            patient.time, patient.event = float(max(1, round(time))), event
            patient.clinical = bladder_clinical(z, clinical_rng, task)
            patient.labels = {"progression": event, "Time_to_prog_or_FUend": int(patient.time)}
    # Each modality sees its own noisy view of z, so no single one is an oracle and fusion can help.
    view_rng = _rng(*key, index, 4)
    views = {m: _noisy(z, view_rng, options.modality_signal) for m in ("wsi", "rna", "mri")}
    patient.modality_views = {m: views[m] for m in {1: ("wsi", "mri"), 2: ("wsi",), 3: ("wsi", "rna")}[task]}
    if genes is not None:
        patient.rna = _rna_world(genes).sample(views["rna"], cohort, rna_rng)
    if options.with_images:
        _add_image_params(patient, options, image_rng, key, index, views)
    site = options.site(cohort)
    if site is not None:  # its own sub-stream: the clean draws of the patient stay what they were
        _observe_at_site(patient, site, _rng(*key, index, 5))
    return patient


def _observe_at_site(patient: SyntheticPatient, site: SiteEffects, rng: np.random.Generator) -> None:
    """The same patient as `site` records, sequences and scans them."""
    patient.clinical = site.apply_clinical(patient.clinical, rng)
    if patient.rna is not None:
        patient.rna = site.apply_rna(patient.rna, rng)
    patient.slides = [replace(s, **site.slide_fields(rng)) for s in patient.slides]


def _add_image_params(
    patient: SyntheticPatient,
    options: CohortOptions,
    rng: np.random.Generator,
    key: tuple[int, ...],
    index: int,
    views: dict[str, float],
) -> None:
    if patient.task == 1:
        cycle = options.slides_per_case
        count = cycle[index % len(cycle)] if cycle else int(rng.integers(1, 4))
        kind = "resection"
    else:
        count, kind = 1, "biopsy"
    patient.slides = [
        slide_params(
            views["wsi"],
            rng,
            int(_rng(*key, index, 10 + k).integers(2**31)),
            patient.cohort,
            kind,
            options.wsi_size,
            options.mpp,
            options.mask_mpp,
        )
        for k in range(count)
    ]
    if patient.task == 1:
        patient.mri = mri_params(views["mri"], rng, int(_rng(*key, index, 99).integers(2**31)))


# ------------------------------------------------------------------------------------------------------------
# Oracles
# ------------------------------------------------------------------------------------------------------------


def oracle_c_index(patients: list[SyntheticPatient]) -> float:
    """Harrell's C of the latent risk on the generated (time, event): the ceiling a model could reach,
    computed with the organisers' call (sksurv `concordance_index_censored`, risk = z)."""
    from sksurv.metrics import concordance_index_censored

    rows = [p for p in patients if p.time is not None and p.event is not None]
    if not rows:
        raise ValueError("oracle_c_index needs survival patients (Task 1 or 3)")
    event = np.array([bool(p.event) for p in rows])
    time = np.array([float(p.time) for p in rows])  # type: ignore[arg-type]
    risk = np.array([p.latent_risk for p in rows])
    return float(concordance_index_censored(event, time, risk)[0])


def oracle_auc(patients: list[SyntheticPatient]) -> float:
    """AUC of the latent risk for the Task 2 BRS3 label (Mann-Whitney, ties count half)."""
    rows = [p for p in patients if p.brs3 is not None]
    pos = np.array([p.latent_risk for p in rows if p.brs3 == 1])
    neg = np.array([p.latent_risk for p in rows if p.brs3 == 0])
    if not len(pos) or not len(neg):
        raise ValueError("oracle_auc needs both BRS3 and non-BRS3 patients")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


