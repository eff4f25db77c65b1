"""Site effects: what a second hospital does to the same patients (stain, focus, codec, RNA platform, records).

Why: cohort shift decided the CHIMERA hidden test, and a shift can only be resisted where it can be measured.
A `SiteEffects` is selected per cohort (`CohortOptions.sites = {"B": site_effects("all")}`) and changes how a
patient is *observed*, never the patient: the latent risk, outcome and biology are those of the clean draw, so
C-index on the shifted cohort against the same cohort clean is the loss the shift causes. Each effect has a fixed
site part (the same for every patient of the site, drawn from the world seed and the site name) and a per-slide
or per-patient part (drawn from the patient's own site stream, so a cohort's clean draws never change).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np

from chimera_surv.synthetic.common import _gene_uniforms
from chimera_surv.synthetic.render import EOSIN_OD, HEMATOXYLIN_OD

# A second dye lot: haematoxylin bluer and eosin pinker than the Ruifrok vectors the clean cohorts use.
SITE_HEMATOXYLIN_OD = (0.50, 0.78, 0.38)
SITE_EOSIN_OD = (0.03, 0.90, 0.43)


@dataclass(frozen=True)
class SiteEffects:
    """One site's observation model. Defaults change nothing; `site_effects(name)` builds the presets."""

    name: str = "none"
    # WSI: a different stain (dye vectors, strengths, per-slide batch variation), scanner focus and codec
    stain_h_od: tuple[float, float, float] | None = None
    stain_e_od: tuple[float, float, float] | None = None
    stain_scale: tuple[float, float] = (1.0, 1.0)  # H, E concentration (staining time)
    stain_slide_sd: float = 0.0  # per-slide log-sd of the H and E strengths (staining batches)
    blur_um: float = 0.0  # Gaussian sigma at level 0, in µm (focus)
    jpeg_quality: int | None = None  # in-scanner JPEG recompression quality
    # RNA platform: gene-wise affine on log expression, per-patient library size and dynamic range, noise, zeros
    rna_gene_shift_sd: float = 0.0
    rna_gene_scale_sd: float = 0.0
    rna_library_log_mean: float = 0.0
    rna_library_log_sd: float = 0.0
    rna_range: tuple[float, float] = (1.0, 1.0)  # per-patient exponent on expression (platform compression)
    rna_noise_sd: float = 0.0
    rna_dropout: float = 0.0
    # Clinical mix: more missing fields and grading drift (one step higher) at this site
    clinical_missing: float = 0.0
    clinical_upgrade: float = 0.0

    @property
    def wsi(self) -> bool:
        return (self.stain_h_od is not None or self.stain_e_od is not None or self.stain_scale != (1.0, 1.0)
                or self.stain_slide_sd > 0 or self.blur_um > 0 or self.jpeg_quality is not None)

    @property
    def rna(self) -> bool:
        return any((self.rna_gene_shift_sd, self.rna_gene_scale_sd, self.rna_library_log_mean,
                    self.rna_library_log_sd, self.rna_noise_sd, self.rna_dropout)) or self.rna_range != (1.0, 1.0)

    @property
    def clinical(self) -> bool:
        return self.clinical_missing > 0 or self.clinical_upgrade > 0

    # --------------------------------------------------------------------------------------------------------
    def slide_fields(self, rng: np.random.Generator) -> dict[str, Any]:
        """SlideParams fields for one slide of this site (its per-slide stain batch drawn from `rng`)."""
        if not self.wsi:
            return {}
        jitter = np.exp(self.stain_slide_sd * rng.standard_normal(2)) if self.stain_slide_sd > 0 else (1.0, 1.0)
        return {
            "stain_h_od": self.stain_h_od,
            "stain_e_od": self.stain_e_od,
            "stain_scale": (float(self.stain_scale[0] * jitter[0]), float(self.stain_scale[1] * jitter[1])),
            "blur_um": self.blur_um,
            "jpeg_quality": self.jpeg_quality,
        }

    def apply_rna(self, values: dict[str, float], rng: np.random.Generator) -> dict[str, float]:
        """The same profile as this site's platform reports it. Zeros stay zero; values rounded like exports."""
        if not self.rna:
            return values
        genes = tuple(values)
        x = np.array([values[g] for g in genes], dtype=np.float64)
        shift, scale = _gene_affine(genes, self.name, self.rna_gene_shift_sd, self.rna_gene_scale_sd)
        positive = x > 0
        centre = 4.0  # the world's mean log expression: the affine pivots around it
        log_x = np.log(np.where(positive, x, 1.0))
        log_x = centre + shift + scale * (log_x - centre)
        gamma = rng.uniform(*self.rna_range)
        library = self.rna_library_log_mean + self.rna_library_log_sd * rng.standard_normal()
        log_x = centre + library + gamma * (log_x - centre) + self.rna_noise_sd * rng.standard_normal(len(x))
        out = np.where(positive, np.round(np.exp(log_x), 3), 0.0)
        out = np.where(rng.random(len(x)) < self.rna_dropout, 0.0, out)
        return {g: float(v) for g, v in zip(genes, out, strict=True)}

    def apply_clinical(self, record: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """More missing categorical fields and grading one step higher, in the task's own conventions."""
        if not self.clinical:
            return record
        out = dict(record)
        for key, (steps, missing_token) in _CLINICAL_FIELDS.items():
            if key not in out:
                continue
            if steps and out[key] in steps[:-1] and rng.random() < self.clinical_upgrade:
                out[key] = steps[steps.index(out[key]) + 1]
            if missing_token is not None and rng.random() < self.clinical_missing:
                out[key] = missing_token
        return out


# key → (ordered categories for grading drift, token a missing value takes); Task 1 and bladder keys
_CLINICAL_FIELDS: dict[str, tuple[list[Any], Any]] = {
    "grade": (["G2", "G3"], None),
    "stage": (["TaHG", "T1HG"], None),
    "substage": (["T1e", "T1m"], "-1"),
    "LVI": (["No", "Yes"], "-1"),
    "smoking": ([], "-1"),
    "ISUP": ([1, 2, 3, 4, 5], None),
    "lymphovascular_invasion": (["0", "1"], "x"),
    "positive_lymph_nodes": ([], "x"),
}


@lru_cache(maxsize=8)
def _gene_affine(genes: tuple[str, ...], name: str, shift_sd: float, scale_sd: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene (shift, scale) of a platform: fixed by the world seed, the site name and the gene name."""
    from scipy.special import ndtri

    u = _gene_uniforms(list(genes), f"site:{name}")
    return shift_sd * ndtri(u[:, 0]), np.exp(scale_sd * ndtri(u[:, 1]))


# The presets: each effect alone at a strength a second hospital plausibly has, and all of them together.
_PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    "stain": {"stain_h_od": SITE_HEMATOXYLIN_OD, "stain_e_od": SITE_EOSIN_OD, "stain_scale": (1.25, 0.8),
              "stain_slide_sd": 0.25},
    "blur": {"blur_um": 0.6},
    "jpeg": {"jpeg_quality": 30},
    "rna": {"rna_gene_shift_sd": 0.4, "rna_gene_scale_sd": 0.1, "rna_library_log_mean": 0.7,
            "rna_library_log_sd": 0.6, "rna_range": (0.6, 1.0), "rna_noise_sd": 0.15, "rna_dropout": 0.02},
    "clinical": {"clinical_missing": 0.15, "clinical_upgrade": 0.15},
}
SITE_EFFECTS = (*_PRESETS, "all")


def site_effects(name: str, strength: float = 1.0) -> SiteEffects:
    """A preset by name ("none", "stain", "blur", "jpeg", "rna", "clinical", "all"), optionally scaled.

    `strength` scales every deviation from the clean value (0 = none, 1 = the preset, 2 = twice as far).
    """
    if name not in SITE_EFFECTS:
        raise ValueError(f"unknown site effect {name!r}; known: {SITE_EFFECTS}")
    merged: dict[str, Any] = {}
    for preset in (_PRESETS if name == "all" else {name: _PRESETS[name]}).values():
        merged.update(preset)
    return _scaled(SiteEffects(name=name, **merged), strength)


def _scaled(effects: SiteEffects, strength: float) -> SiteEffects:
    """Move every field `strength` times as far from the clean value as the preset does."""
    if strength == 1.0:
        return effects
    clean = SiteEffects()

    def lerp(a: Any, b: Any) -> Any:
        if isinstance(b, tuple):
            return tuple(float(x + strength * (y - x)) for x, y in zip(a, b, strict=True))
        return float(a + strength * (b - a))

    changes: dict[str, Any] = {key: lerp(getattr(clean, key), getattr(effects, key)) for key in (
        "stain_scale", "stain_slide_sd", "blur_um", "rna_gene_shift_sd", "rna_gene_scale_sd", "rna_library_log_mean",
        "rna_library_log_sd", "rna_range", "rna_noise_sd", "rna_dropout", "clinical_missing", "clinical_upgrade")}
    for key, ruifrok in (("stain_h_od", HEMATOXYLIN_OD), ("stain_e_od", EOSIN_OD)):
        if getattr(effects, key) is not None:
            changes[key] = lerp(tuple(float(v) for v in ruifrok), getattr(effects, key))
    if effects.jpeg_quality is not None:
        changes["jpeg_quality"] = int(np.clip(round(95 - strength * (95 - effects.jpeg_quality)), 5, 95))
    for key in ("stain_slide_sd", "blur_um", "rna_gene_shift_sd", "rna_gene_scale_sd", "rna_library_log_sd",
                "rna_noise_sd", "rna_dropout", "clinical_missing", "clinical_upgrade"):
        changes[key] = float(np.clip(changes[key], 0.0, 1.0 if key in ("rna_dropout", "clinical_missing",
                                                                       "clinical_upgrade") else None))
    return replace(effects, **changes)
