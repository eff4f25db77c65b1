"""Synthetic CHIMERA patients: one latent risk per patient shapes every modality it carries.

Why: no real CHIMERA data may ship with the project, yet the container, the training code and the demo
need cases that look like the real ones (file formats, clinical key/value conventions, time and censoring)
and carry a known signal, so a trained model can be compared with an oracle. This module is the in-memory
model: patients, their outcomes, their clinical/RNA values, and pure-numpy renderers for their slides and
MRI volumes. Writing the two on-disk layouts lives in `make_cases.py`.

Two seeds: the *world* (gene baselines, the z-driven gene module, cohort batch offsets, the time model) is
fixed, so cohorts drawn with different seeds share the same biology and a model trained on one transfers to
another; the *cohort seed* draws the patients. Patient i depends only on (stream, task, seed, i), never on n.
See docs/synthetic.md for the generative model and how the time model was fitted.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

WORLD_SEED = 20250923
PROJECT_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = PROJECT_ROOT.parent / "shared" / "reference" / "chimera"
TASK_IDS = (1, 2, 3)
# Share of cohort B in the public training sets: Task 2 50/182, Task 3 51/176 (chimera-spec.md §2.2, §7).
COHORT_B_FRACTION = {1: 0.0, 2: 50 / 182, 3: 51 / 176}
BRS3_PREVALENCE = 57 / 182  # chimera-spec.md §1.3


def _rng(*keys: int) -> np.random.Generator:
    """A generator keyed by integers, so each patient/slide stream is independent of every other."""
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def _gene_uniforms(genes: list[str], salt: str = "") -> np.ndarray:
    """(G, 8) uniforms in (0, 1) from a SHA-512 of world seed + salt + gene name: a gene behaves the same in
    every panel and every Python run (unlike `hash()`)."""
    raw = b"".join(hashlib.sha512(f"{WORLD_SEED}:{salt}:{g}".encode()).digest() for g in genes)
    words = np.frombuffer(raw, dtype="<u8").reshape(len(genes), 8)
    return ((words >> np.uint64(11)).astype(np.float64) + 0.5) / float(2**53)


# ------------------------------------------------------------------------------------------------------------
# Reference data (read from ../shared/reference, never copied into the project)
# ------------------------------------------------------------------------------------------------------------


def load_censoring_times(csv_path: Path | None = None) -> np.ndarray:
    """Censored follow-up times (months) of the 176 real Task 3 patients; a parametric stand-in if absent.

    The stand-in matches the published summary (median 91, mean 92, range 17-202; chimera-spec.md §7), so the
    generator still works where the shared folder is not mounted (e.g. inside a container).
    """
    path = Path(csv_path) if csv_path else REFERENCE_DIR / "bladder-rec.csv"
    if path.exists():
        import csv

        with path.open() as handle:
            rows = list(csv.DictReader(handle))
        times = np.array([float(r["Time"]) for r in rows if int(r["Progression"]) == 0], dtype=float)
        if times.size:
            return np.sort(times)
    warnings.warn(f"{path} not found: censoring times drawn from a parametric stand-in", stacklevel=2)
    q = (np.arange(112) + 0.5) / 112
    from scipy.stats import truncnorm

    return np.sort(truncnorm.ppf(q, (17 - 92) / 35, (202 - 92) / 35, loc=92, scale=35))


def load_gene_order(path: Path | None = None) -> list[str]:
    """The 19,359 CHIMERA RNA gene symbols (project resources first, then the shared reference copy)."""
    candidates = (
        [Path(path)]
        if path
        else [PROJECT_ROOT / "resources" / "gene_order.json", REFERENCE_DIR / "gene_order.json"]
    )
    for candidate in candidates:
        if candidate.exists():
            genes = json.loads(candidate.read_text())
            if isinstance(genes, list) and genes:
                return [str(g) for g in genes]
    raise FileNotFoundError(f"no gene order found in {[str(c) for c in candidates]}")


# ------------------------------------------------------------------------------------------------------------
# Time model: mixture cure model, fitted to bladder-rec.csv (see docs/synthetic.md)
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeModel:
    """P(susceptible | z) = sigmoid(a + b z); susceptible event time = shift + LogNormal(mu - c z, s);
    censoring = an empirical censored time of the real cohort (jittered, scaled by `censor_scale`).

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
# Image parameters
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlideParams:
    """Everything the slide renderer needs; z-driven fields are the signal, the rest is nuisance."""

    seed: int
    width: int = 3072  # level-0 pixels
    height: int = 2048
    mpp: float = 0.25
    mask_mpp: float = 4.0
    kind: str = "biopsy"  # "biopsy" (several fragments) or "resection" (one large section)
    nuclear_density: float = 4.0  # nuclei per 1,000 µm² of tissue
    nuclear_radius_um: float = 3.0
    large_nuclei_fraction: float = 0.2
    hematoxylin: float = 1.0  # nuclear stain strength
    stroma_hematoxylin: float = 0.08  # basophilia of the stroma (purple tint)
    lumen_fraction: float = 0.15  # share of tissue that is gland lumen (well differentiated = more)
    stain_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)  # cohort/scanner OD offset per channel
    work_mpp: float = 1.0  # resolution the fields are drawn at before up-sampling

    def validate(self) -> None:
        for name, target in (("work_mpp", self.work_mpp), ("mask_mpp", self.mask_mpp)):
            ratio = target / self.mpp
            if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
                raise ValueError(f"{name}={target} must be an integer multiple of mpp={self.mpp}")
            if self.width % round(ratio) or self.height % round(ratio):
                raise ValueError(
                    f"slide {self.width}x{self.height} not divisible by the {name} factor {ratio}"
                )


@dataclass(frozen=True)
class MRIParams:
    """Task 1 MRI phantom: an ellipsoidal prostate with one lesion; T2, ADC/HBV grids differ as in PI-CAI."""

    seed: int
    prostate_volume_ml: float = 40.0
    lesion_diameter_mm: float = 8.0
    lesion_adc: float = 1100.0  # 1e-6 mm²/s; normal peripheral zone ≈ 1600
    lesion_t2_factor: float = 0.6  # T2 hypo-intensity relative to the gland
    lesion_hbv_factor: float = 2.0  # high-b hyper-intensity relative to the gland
    t2_size: tuple[int, int, int] = (160, 160, 20)  # (x, y, z) voxels
    t2_spacing: tuple[float, float, float] = (0.5, 0.5, 3.0)
    dwi_size: tuple[int, int, int] = (42, 42, 20)
    dwi_spacing: tuple[float, float, float] = (2.0, 2.0, 3.0)


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
# Clinical variables
# ------------------------------------------------------------------------------------------------------------


def _noisy(z: float, rng: np.random.Generator, weight: float) -> float:
    """A unit-variance variable correlated `weight` with z: how much of the signal a variable carries."""
    return weight * z + math.sqrt(1.0 - weight**2) * rng.standard_normal()


def _ordinal(value: float, cumulative: list[float]) -> int:
    """0-based category of a standard-normal `value` for the given cumulative prevalences."""
    from statistics import NormalDist

    cuts = [NormalDist().inv_cdf(p) for p in cumulative]
    return int(np.searchsorted(cuts, value))


def _binary_str(rng: np.random.Generator, p: float, missing: float = 0.0, missing_token: str = "x") -> str:
    if rng.random() < missing:
        return missing_token
    return "1" if rng.random() < p else "0"


GLEASON_BY_ISUP = {
    1: [(3, 3)],
    2: [(3, 4)],
    3: [(4, 3)],
    4: [(4, 4), (3, 5), (5, 3)],
    5: [(4, 5), (5, 4), (5, 5)],
}


def task1_clinical(z: float, rng: np.random.Generator) -> dict[str, Any]:
    """Prostatectomy clinical record (chimera-spec.md §2.1). Grade, PSA, pT, margins, SVI, LVI rise with z,
    like the CAPRA-S ingredients; each carries part of the signal (correlation 0.35-0.6)."""
    isup = 1 + _ordinal(_noisy(z, rng, 0.6), [0.15, 0.55, 0.80, 0.88])
    options = GLEASON_BY_ISUP[isup]
    weights = {1: [1.0], 2: [1.0], 3: [1.0], 4: [0.8, 0.1, 0.1], 5: [0.5, 0.35, 0.15]}[isup]
    primary, secondary = options[int(rng.choice(len(options), p=weights))]
    record: dict[str, Any] = {
        "age_at_prostatectomy": int(np.clip(round(64 + 1.5 * z + 6.5 * rng.standard_normal()), 42, 80)),
        "primary_gleason": primary,
        "secondary_gleason": secondary,
    }
    # A tertiary pattern exists in ~12% of RP specimens; otherwise it is reported as "x", null or left out.
    if max(primary, secondary) < 5 and rng.random() < 0.10 + 0.05 * max(z, 0.0):
        record["tertiary_gleason"] = 5
    else:
        style = rng.random()
        if style < 0.6:
            record["tertiary_gleason"] = "x"
        elif style < 0.8:
            record["tertiary_gleason"] = None
    record["ISUP"] = isup
    record["pre_operative_PSA"] = round(float(np.exp(1.95 + 0.6 * _noisy(z, rng, 0.5))), 1)
    stage_latent = _noisy(z, rng, 0.6)
    stage = _ordinal(stage_latent, [0.65, 0.87, 0.98])  # pT2, pT3a, pT3b, pT4
    if rng.random() < 0.01:
        pt = "x"
    elif stage == 0:
        pt = str(rng.choice(["2", "2a", "2b", "2c"], p=[0.3, 0.1, 0.1, 0.5]))
    elif stage == 1:
        pt = "3" if rng.random() < 0.05 else "3a"
    else:
        pt = "3b" if stage == 2 else str(rng.choice(["4", "4a"]))
    record["pT_stage"] = pt
    record["positive_lymph_nodes"] = _binary_str(rng, _sigmoid(-4.0 + 1.6 * stage_latent), missing=0.2)
    record["capsular_penetration"] = "x" if rng.random() < 0.03 else ("1" if stage >= 1 else "0")
    record["positive_surgical_margins"] = int(rng.random() < _sigmoid(-1.2 + 1.2 * _noisy(z, rng, 0.6)))
    record["invasion_seminal_vesicles"] = "x" if rng.random() < 0.03 else ("1" if stage >= 2 else "0")
    lvi = _binary_str(rng, _sigmoid(-2.0 + 1.2 * _noisy(z, rng, 0.4)), missing=0.08)
    if lvi != "x" and rng.random() < 0.15:
        lvi = f"{lvi}.0"  # "sometimes a float string" (DIAG)
    record["lymphovascular_invasion"] = lvi
    record["earlier_therapy"] = str(
        rng.choice(
            ["none", "unknown", "hormones", "radiotherapy", "radiotherapy+hormones", "cryotherapy"],
            p=[0.84, 0.08, 0.04, 0.02, 0.01, 0.01],
        )
    )
    return record


def task1_labels(time: float, event: int, rng: np.random.Generator) -> dict[str, Any]:
    """BCR as "0.0"/"1.0", follow-up in float months, and the leaking BCR_PSA (≥ 0.1 exactly at BCR)."""
    bcr_psa = (
        round(float(0.1 + rng.lognormal(-1.8, 0.8)), 2) if event else round(float(rng.uniform(0, 0.08)), 2)
    )
    return {"BCR": "1.0" if event else "0.0", "time_to_follow-up/BCR": round(time, 1), "BCR_PSA": bcr_psa}


def bladder_clinical(z: float, rng: np.random.Generator, task: int) -> dict[str, Any]:
    """Bladder TURBT record (chimera-spec.md §2.2/2.3): stage, grade, LVI, EORTC and variant rise with z.
    Task 3 uses the narrower category sets seen in its training data (no T2/T3, primary tumours, no "-1"
    for sex/reTUR/EORTC); missing categoricals are the string "-1", a missing instillation count is -1."""
    t3 = task == 3
    stage_latent = _noisy(z, rng, 0.45)
    if t3:
        stage = "T1HG" if rng.random() < _sigmoid(0.4 + 1.0 * stage_latent) else "TaHG"
    else:
        stage = ["TaHG", "T1HG", "T2HG", "T3HG"][_ordinal(stage_latent, [0.32, 0.92, 0.98])]
    if stage == "TaHG" or rng.random() < 0.1:
        substage = "-1"
    else:
        substage = "T1m" if rng.random() < _sigmoid(-0.6 + 1.0 * z) else "T1e"
    lvi_missing = rng.random() < 0.15
    lvi_yes = rng.random() < _sigmoid(-2.2 + 1.2 * _noisy(z, rng, 0.5))
    variant = "UCC + Variant" if rng.random() < _sigmoid(-2.4 + 0.8 * z) else "UCC"
    highest = stage != "TaHG" and (lvi_yes or variant != "UCC" or rng.random() < _sigmoid(-0.3 + 1.0 * z))
    record: dict[str, Any] = {
        "age": int(np.clip(round(69 + 1.0 * z + 9.0 * rng.standard_normal()), 35, 95)),
        "sex": "-1" if (not t3 and rng.random() < 0.02) else ("Male" if rng.random() < 0.8 else "Female"),
        "smoking": str(rng.choice(["Yes", "No", "-1"], p=[0.55, 0.25, 0.20])),
        "tumor": "Primary" if (t3 or rng.random() < 0.75) else "Recurrence",
        "stage": stage,
        "substage": substage,
        "grade": "G3" if rng.random() < _sigmoid(0.8 + 1.0 * _noisy(z, rng, 0.5)) else "G2",
        "reTUR": "-1" if (not t3 and rng.random() < 0.05) else ("Yes" if rng.random() < 0.5 else "No"),
        "LVI": "-1" if lvi_missing else ("Yes" if lvi_yes else "No"),
        "variant": variant,
        "EORTC": "-1" if (not t3 and rng.random() < 0.05) else ("Highest risk" if highest else "High risk"),
        "no_instillations": -1
        if rng.random() < 0.05
        else int(np.clip(round(19 - 2.0 * z + 9.0 * rng.standard_normal()), 1, 45)),
    }
    if t3:
        brs3 = rng.random() < _sigmoid(-1.1 + 0.8 * z)
        record["BRS"] = "BRS3" if brs3 else str(rng.choice(["BRS1", "BRS2"]))
    return record


@cache
def brs3_intercept(slope: float = 2.0, prevalence: float = BRS3_PREVALENCE) -> float:
    """Intercept a with E_z[sigmoid(a + slope z)] = prevalence for z ~ N(0, 1) (Gauss-Hermite, bisection)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(64)
    weights = weights / weights.sum()
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        mean = float(np.sum(weights / (1 + np.exp(-(mid + slope * nodes)))))
        lo, hi = (mid, hi) if mean < prevalence else (lo, mid)
    return (lo + hi) / 2


# ------------------------------------------------------------------------------------------------------------
# RNA
# ------------------------------------------------------------------------------------------------------------

MODULE_SIZE = 50
N_PROGRAMS = 6  # nuisance co-expression programs, so the data has structure besides z


@dataclass(frozen=True)
class RNAWorld:
    """Per-gene log-means, the z-module and cohort batch offsets for a gene list, all fixed by the world seed.

    Gene properties come from a hash of the gene name, so a gene behaves the same in any panel; the module
    is the MODULE_SIZE genes of the full CHIMERA list with the smallest world hash (always kept in a panel).
    """

    genes: tuple[str, ...]
    log_mean: np.ndarray  # natural-log mean expression per gene
    module_loading: np.ndarray  # shift of log expression per unit z (0 outside the module)
    program_loading: np.ndarray  # (N_PROGRAMS, G)
    batch_offset_b: np.ndarray  # cohort B log offset per gene
    dropout_scale: np.ndarray  # how prone a gene is to zero counts

    @classmethod
    def build(cls, genes: list[str]) -> RNAWorld:
        from scipy.special import ndtri

        u = _gene_uniforms(genes)  # (G, 8), fixed per gene name
        log_mean = 4.0 + 2.2 * ndtri(u[:, 0])  # DESeq2-normalised counts span ~1 to ~10^4
        module = set(module_genes())
        in_module = np.array([g in module for g in genes])
        sign = np.where(u[:, 1] < 0.5, -1.0, 1.0)
        loading = np.where(in_module, (0.35 + 0.5 * u[:, 2]) * sign, 0.0)
        value, member = _gene_uniforms(genes, "program"), _gene_uniforms(genes, "member")
        program = (ndtri(value[:, :N_PROGRAMS]) * (member[:, :N_PROGRAMS] < 0.3)).T
        batch = 0.15 + 0.25 * ndtri(u[:, 4])
        return cls(tuple(genes), log_mean, loading, 0.35 * program, batch, u[:, 5])

    def sample(self, z: float, cohort: str, rng: np.random.Generator) -> dict[str, float]:
        """One patient's expression: log-normal around the gene mean, the module shifted by z, zeros for low
        expression, a batch offset in cohort B. Values rounded to 3 decimals like exported tables."""
        programs = rng.standard_normal(N_PROGRAMS)
        log_expr = (
            self.log_mean
            + self.module_loading * z
            + programs @ self.program_loading
            + 0.45 * rng.standard_normal(len(self.genes))
        )
        if cohort == "B":
            log_expr = log_expr + self.batch_offset_b
        values = np.exp(log_expr)
        zero = rng.random(len(self.genes)) < np.exp(-values * (0.5 + self.dropout_scale))
        values = np.where(zero, 0.0, np.round(values, 3))
        return {g: float(v) for g, v in zip(self.genes, values, strict=True)}


@lru_cache(maxsize=1)
def module_genes() -> tuple[str, ...]:
    """The z-driven gene module: fixed by the world seed over the full CHIMERA gene list."""
    try:
        full = load_gene_order()
    except FileNotFoundError:
        return ()
    ranked = sorted(full, key=lambda g: _stable_hash(f"{WORLD_SEED}:module:{g}"))
    return tuple(sorted(ranked[:MODULE_SIZE]))


def gene_panel(size: int | None = None, genes: list[str] | None = None) -> list[str]:
    """The gene list to generate: `genes` if given, else the full CHIMERA list, or a `size`-gene subset of it
    that always contains the module (sorted, like gene_order.json)."""
    if genes is not None:
        return list(genes)
    full = load_gene_order()
    if size is None or size >= len(full):
        return full
    module = set(module_genes())
    rest = sorted((g for g in full if g not in module), key=lambda g: _stable_hash(f"{WORLD_SEED}:panel:{g}"))
    return sorted(list(module) + rest[: max(0, size - len(module))])


@lru_cache(maxsize=4)
def _rna_world(genes: tuple[str, ...]) -> RNAWorld:
    return RNAWorld.build(list(genes))


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
    return patient


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


# ------------------------------------------------------------------------------------------------------------
# Slide renderer (pure numpy + one pyvips resize; no file I/O)
# ------------------------------------------------------------------------------------------------------------

HEMATOXYLIN_OD = np.array([0.65, 0.70, 0.29])  # Ruifrok & Johnston stain vectors (optical density per unit)
EOSIN_OD = np.array([0.07, 0.99, 0.11])
BACKGROUND_RGB = np.array([238.0, 238.0, 236.0])


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Unit-variance noise with features about `scale_px` wide: a coarse grid up-sampled (cubic kernel)."""
    import pyvips

    step = max(1.0, float(scale_px))
    coarse = rng.standard_normal((int(shape[0] / step) + 4, int(shape[1] / step) + 4)).astype(np.float32)
    image = pyvips.Image.new_from_array(coarse).resize(step, kernel="cubic")
    field = image.numpy()[: shape[0], : shape[1]].astype(np.float32)
    return (field - field.mean()) / (field.std() + 1e-9)


def _tissue_shape(
    rng: np.random.Generator, shape: tuple[int, int], kind: str, um_per_px: float
) -> np.ndarray:
    """Where the tissue is: one large section (resection) or 2-4 elongated biopsy fragments, ragged edges."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ragged = 0.22 * _smooth_noise(rng, shape, 60 / um_per_px)
    if kind == "resection":
        specs = [
            (
                w * rng.uniform(0.45, 0.55),
                h * rng.uniform(0.45, 0.55),
                w * 0.34,
                h * 0.32,
                rng.uniform(-0.25, 0.25),  # near-horizontal, so the section stays on the glass
            )
        ]
    else:
        specs = []
        for _ in range(int(rng.integers(2, 5))):
            length = w * rng.uniform(0.15, 0.3)
            specs.append(
                (
                    w * rng.uniform(0.25, 0.75),
                    h * rng.uniform(0.25, 0.75),
                    length,
                    min(h, w) * rng.uniform(0.06, 0.12),
                    rng.uniform(0, np.pi),
                )
            )
    distance = np.full(shape, np.inf, dtype=np.float32)
    for cx, cy, rx, ry, angle in specs:
        c, s = math.cos(angle), math.sin(angle)
        u = ((xx - cx) * c + (yy - cy) * s) / rx
        v = (-(xx - cx) * s + (yy - cy) * c) / ry
        distance = np.minimum(distance, np.sqrt(u * u + v * v))
    tissue = (distance + ragged) < 1.0
    margin = max(2, int(0.02 * min(h, w)))
    tissue[:margin], tissue[-margin:], tissue[:, :margin], tissue[:, -margin:] = False, False, False, False
    if tissue.mean() < 0.03:  # degenerate draw: fall back to a central ellipse
        tissue = (((xx - w / 2) / (0.3 * w)) ** 2 + ((yy - h / 2) / (0.3 * h)) ** 2) < 1
    return tissue


def _nuclei(rng: np.random.Generator, where: np.ndarray, p: SlideParams, um_per_px: float) -> np.ndarray:
    """Nuclear stain concentration: Poisson-many flat-topped blobs inside `where`, some enlarged."""
    from scipy.ndimage import gaussian_filter

    area_um2 = float(where.sum()) * um_per_px**2
    count = int(rng.poisson(p.nuclear_density * area_um2 / 1000.0))
    field = np.zeros(where.shape, dtype=np.float32)
    candidates = np.flatnonzero(where)
    if count == 0 or candidates.size == 0:
        return field
    sites = rng.choice(candidates, size=count)
    large = rng.random(count) < p.large_nuclei_fraction
    for radius_um, chosen in (
        (p.nuclear_radius_um, sites[~large]),
        (1.6 * p.nuclear_radius_um, sites[large]),
    ):
        points = np.zeros(where.size, dtype=np.float32)
        np.add.at(points, chosen, 1.0)
        sigma = radius_um / um_per_px / 1.26  # the 1/2.2 level of a Gaussian lies at 1.26 sigma
        blob = gaussian_filter(points.reshape(where.shape), sigma) * (2 * math.pi * sigma**2)
        field = np.maximum(field, np.clip(2.2 * blob, 0.0, 1.25))
    return field


def render_slide(p: SlideParams) -> tuple[np.ndarray, np.ndarray]:
    """(level-0 RGB uint8 of height x width, 0/1 uint8 tissue mask at `mask_mpp`).

    Fields are drawn at `work_mpp` (1 µm/px), coloured by Beer-Lambert mixing of haematoxylin and eosin,
    up-sampled to level 0 with linear interpolation, and given a per-pixel grain. The mask is the same tissue
    field block-averaged to the mask grid, so mask and slide agree to within one mask pixel.
    """
    import pyvips

    p.validate()
    rng = np.random.default_rng(p.seed)
    factor = round(p.work_mpp / p.mpp)
    shape = (p.height // factor, p.width // factor)
    um = p.work_mpp
    tissue = _tissue_shape(rng, shape, p.kind, um)
    lumen_field = _smooth_noise(rng, shape, 22 / um)
    lumen_level = (
        float(np.quantile(lumen_field[tissue], 1.0 - p.lumen_fraction)) if p.lumen_fraction > 0 else np.inf
    )
    lumen = tissue & (lumen_field > lumen_level)
    cellular = tissue & ~lumen
    fibres = _smooth_noise(rng, shape, 6 / um)
    nuclei = _nuclei(rng, cellular, p, um)
    chromatin = 0.85 + 0.15 * _smooth_noise(rng, shape, 1.5 / um)

    eosin = np.where(cellular, 0.55 + 0.12 * fibres, np.where(lumen, 0.06, 0.0)).astype(np.float32)
    haem = np.where(cellular, p.stroma_hematoxylin * (1 + 0.3 * fibres), 0.0).astype(np.float32)
    haem = haem + p.hematoxylin * 1.4 * nuclei * chromatin
    eosin = np.clip(eosin * (1 - 0.5 * np.clip(nuclei, 0, 1)), 0, None)
    od = (
        haem[..., None] * HEMATOXYLIN_OD
        + eosin[..., None] * EOSIN_OD
        + np.asarray(p.stain_shift)[None, None, :] * tissue[..., None]
    )
    tissue_rgb = BACKGROUND_RGB * np.exp(-np.clip(od, 0, None))
    background = BACKGROUND_RGB + 2.0 * _smooth_noise(rng, shape, 40 / um)[..., None]
    rgb_work = np.where(tissue[..., None], tissue_rgb, background)
    rgb_work = np.clip(np.round(rgb_work), 0, 255).astype(np.uint8)

    image = pyvips.Image.new_from_array(np.ascontiguousarray(rgb_work)).copy(interpretation="srgb")
    level0 = image.resize(factor, kernel="linear").numpy()[: p.height, : p.width]
    grain = rng.integers(-4, 5, size=(p.height, p.width, 1), dtype=np.int16)
    rgb = np.clip(level0.astype(np.int16) + grain, 0, 255).astype(np.uint8)
    return rgb, _mask_from_tissue(tissue, p)


def _mask_from_tissue(tissue: np.ndarray, p: SlideParams) -> np.ndarray:
    """Block-average (or repeat) the work-grid tissue onto the mask grid; 1 = tissue."""
    mask_h, mask_w = round(p.height * p.mpp / p.mask_mpp), round(p.width * p.mpp / p.mask_mpp)
    ratio = p.mask_mpp / p.work_mpp
    if ratio >= 1:
        k = round(ratio)
        blocks = tissue[: mask_h * k, : mask_w * k].reshape(mask_h, k, mask_w, k).mean(axis=(1, 3))
        return (blocks >= 0.5).astype(np.uint8)
    k = round(1 / ratio)
    return np.repeat(np.repeat(tissue, k, axis=0), k, axis=1)[:mask_h, :mask_w].astype(np.uint8)


# ------------------------------------------------------------------------------------------------------------
# MRI renderer
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Volume:
    """A volume as SimpleITK wants it: array (z, y, x), spacing and origin (x, y, z) in mm."""

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]


def _grid(
    size: tuple[int, int, int], spacing: tuple[float, float, float], offset: tuple[float, float, float]
) -> tuple[tuple[float, float, float], tuple[np.ndarray, ...]]:
    """Origin centring the grid on (0,0,0) + offset, and the physical (z, y, x) voxel-centre coordinates."""
    origin = tuple(-(n - 1) / 2 * s + o for n, s, o in zip(size, spacing, offset, strict=True))
    axes = [origin[i] + spacing[i] * np.arange(size[i]) for i in range(3)]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    return origin, (z, y, x)  # type: ignore[return-value]


def render_mri(p: MRIParams) -> dict[str, Volume]:
    """T2 (int16), ADC (int16, 1e-6 mm²/s), HBV (float32) and the prostate mask (uint8, T2 grid).

    One analytic phantom (body ellipse, ellipsoidal prostate, spherical lesion in the posterior peripheral
    zone) is sampled on two grids, as in PI-CAI: T2 at 0.5x0.5x3 mm and DWI at 2x2x3 mm with a shifted origin.
    """
    rng = np.random.default_rng(p.seed)
    ratios = np.array([1.25, 1.0, 1.05])  # left-right, antero-posterior, cranio-caudal
    k = (p.prostate_volume_ml * 1000.0 / (4.0 / 3.0 * math.pi * ratios.prod())) ** (1 / 3)
    semi = k * ratios  # mm, (x, y, z)
    centre = np.array([rng.normal(0, 2), rng.normal(0, 2), rng.normal(0, 3)])
    lesion_centre = centre + np.array(
        [rng.uniform(-0.4, 0.4) * semi[0], 0.5 * semi[1], rng.uniform(-0.3, 0.3) * semi[2]]
    )
    lesion_radius = p.lesion_diameter_mm / 2

    def phantom(zyx: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z, y, x = zyx
        body = (x / 38.0) ** 2 + (y / 30.0) ** 2 < 1
        gland = (
            ((x - centre[0]) / semi[0]) ** 2
            + ((y - centre[1]) / semi[1]) ** 2
            + ((z - centre[2]) / semi[2]) ** 2
        ) < 1
        lesion = gland & (
            ((x - lesion_centre[0]) ** 2 + (y - lesion_centre[1]) ** 2 + (z - lesion_centre[2]) ** 2)
            < lesion_radius**2
        )
        return body, gland, lesion

    t2_origin, t2_zyx = _grid(p.t2_size, p.t2_spacing, (0.0, 0.0, 0.0))
    body, gland, lesion = phantom(t2_zyx)
    t2 = np.where(body, 180.0, 5.0) + np.where(gland, 140.0, 0.0)
    t2 = np.where(lesion, 320.0 * p.lesion_t2_factor, t2) + 12.0 * rng.standard_normal(t2.shape)
    dwi_origin, dwi_zyx = _grid(p.dwi_size, p.dwi_spacing, (0.7, -0.9, 1.5))
    body_d, gland_d, lesion_d = phantom(dwi_zyx)
    adc = np.where(body_d, 1300.0, 0.0) + np.where(gland_d, 350.0, 0.0)
    adc = np.where(lesion_d, p.lesion_adc, adc) + np.where(body_d, 60.0, 5.0) * rng.standard_normal(adc.shape)
    hbv = np.where(body_d, 8.0, 0.5) + np.where(gland_d, 4.0, 0.0)
    hbv = np.where(lesion_d, 12.0 * p.lesion_hbv_factor, hbv) + 1.5 * rng.standard_normal(hbv.shape)
    return {
        "t2w": Volume(np.clip(np.round(t2), 0, 4000).astype(np.int16), p.t2_spacing, t2_origin),
        "adc": Volume(np.clip(np.round(adc), 0, 4000).astype(np.int16), p.dwi_spacing, dwi_origin),
        "hbv": Volume(np.clip(hbv, 0, None).astype(np.float32), p.dwi_spacing, dwi_origin),
        "mask": Volume(gland.astype(np.uint8), p.t2_spacing, t2_origin),
    }
