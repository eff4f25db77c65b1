"""Stain: per-slide Macenko normalisation (inference and training); HED jitter and focus/codec (quality) jitter
(training extraction only).

Why: a second hospital's dye lot, staining time and scanner move every colour a frozen patch encoder sees. The
container sees one patient per run, so nothing may be fitted on the test cohort; Macenko's stain vectors and
concentration scale are estimated from the slide itself (its tissue pixels at low resolution), which is safe
for a single patient. HED jitter (Tellez et al. 2018) perturbs the haematoxylin, eosin and DAB channels of each
training patch so the downstream model sees more than one stain; quality jitter blurs and JPEG-recompresses
training patches (the scanner focus and codec of another site, which no normalisation undoes), so the model
learns to lean less on features those move (Tellez et al. 2019 augment blur and noise the same way).

torchstain (MIT) implements Macenko per *image*; a slide needs the vectors of the whole slide applied to each
patch, so the estimate and the mapping are written here and tested against torchstain (a test-only oracle):
fitted on one image and applied to the same image, both give the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IO = 240.0  # transmitted light intensity of the Macenko formulation
# Reference stain vectors and 99th-percentile concentrations (Macenko et al. 2009, as in HEnorm/torchstain)
HE_REFERENCE = np.array([[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]])
MAX_C_REFERENCE = np.array([1.9705, 1.0308])
# Ruifrok & Johnston haematoxylin, eosin, DAB optical densities (rows), for HED jitter
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
STAIN_NORMS = ("none", "macenko")


def _od(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 → optical density, the Macenko convention (-log((I + 1) / Io))."""
    return -np.log((rgb.astype(np.float64) + 1.0) / IO)


@dataclass(frozen=True)
class MacenkoStain:
    """One slide's stain: `he` (3, 2) stain vectors (H first) and `max_c` (2,) 99th-percentile concentrations."""

    he: np.ndarray
    max_c: np.ndarray

    @classmethod
    def fit(cls, rgb: np.ndarray, alpha: float = 1.0, beta: float = 0.15) -> MacenkoStain:
        """Estimate from pixels (any shape ending in 3). Raises ValueError when too few stained pixels."""
        od = _od(np.asarray(rgb).reshape(-1, 3))
        stained = od[~np.any(od < beta, axis=1)]
        if len(stained) < 50:
            raise ValueError(f"Macenko needs stained pixels; {len(stained)} found")
        _, vectors = np.linalg.eigh(np.cov(stained.T))
        plane = vectors[:, 1:3]
        projected = stained @ plane
        phi = np.arctan2(projected[:, 1], projected[:, 0])
        lo, hi = np.percentile(phi, alpha), np.percentile(phi, 100 - alpha)
        v_lo = plane @ np.array([np.cos(lo), np.sin(lo)])
        v_hi = plane @ np.array([np.cos(hi), np.sin(hi)])
        # haematoxylin is the vector with the larger red OD (Macenko's heuristic)
        he = np.stack([v_lo, v_hi], axis=1) if v_lo[0] > v_hi[0] else np.stack([v_hi, v_lo], axis=1)
        concentrations = np.linalg.lstsq(he, od.T, rcond=None)[0]
        max_c = np.percentile(concentrations, 99, axis=1)
        if not np.all(np.isfinite(he)) or not np.all(np.abs(max_c) > 1e-6):
            raise ValueError("Macenko estimate is degenerate")
        return cls(he, max_c)

    def normalise(self, rgb: np.ndarray) -> np.ndarray:
        """Map pixels (..., 3) uint8 from this stain onto the reference stain; same shape, uint8."""
        shape = rgb.shape
        od = _od(rgb.reshape(-1, 3))
        concentrations = np.linalg.lstsq(self.he, od.T, rcond=None)[0]
        concentrations = concentrations / (self.max_c / MAX_C_REFERENCE)[:, None]
        out = np.minimum(IO * np.exp(-HE_REFERENCE @ concentrations), 255.0)
        return out.T.reshape(shape).astype(np.uint8)

    def to_dict(self) -> dict[str, list]:
        return {"he": self.he.tolist(), "max_c": self.max_c.tolist()}


def fit_slide_stain(wsi: object, tissue: np.ndarray | None, max_side: int = 1024, max_pixels: int = 200_000
                    ) -> MacenkoStain:
    """The slide's own stain from its tissue at low resolution (the smallest level with a side >= `max_side`,
    else level 0). `tissue` is a boolean map (any resolution) resized onto that level. Only the slide is used."""
    level = 0
    for candidate in range(wsi.level_count):  # type: ignore[attr-defined]
        width, height = wsi.level_dimensions[candidate]  # type: ignore[attr-defined]
        if max(width, height) >= max_side:
            level = candidate
    rgb = wsi.read_level(level)[..., :3]  # type: ignore[attr-defined]
    pixels = rgb.reshape(-1, 3)
    if tissue is not None and tissue.size:
        rows = (np.arange(rgb.shape[0]) * tissue.shape[0] // rgb.shape[0]).clip(0, tissue.shape[0] - 1)
        cols = (np.arange(rgb.shape[1]) * tissue.shape[1] // rgb.shape[1]).clip(0, tissue.shape[1] - 1)
        inside = np.asarray(tissue, bool)[np.ix_(rows, cols)].reshape(-1)
        if inside.sum() >= 1000:
            pixels = pixels[inside]
    if len(pixels) > max_pixels:  # an even, deterministic subsample
        pixels = pixels[np.linspace(0, len(pixels) - 1, max_pixels).astype(np.int64)]
    return MacenkoStain.fit(pixels)


def hed_jitter(patches: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """HED colour augmentation (Tellez et al. 2018): each patch's H, E, D concentrations × scale + shift.

    `patches` (B, H, W, 3) uint8, `scale`/`shift` (B, 3) → same shape uint8.
    """
    hed_from_rgb = np.linalg.inv(RGB_FROM_HED).astype(np.float32)
    od = -np.log((patches.astype(np.float32) + 1.0) / 256.0)
    hed = od @ hed_from_rgb
    hed = hed * scale[:, None, None, :].astype(np.float32) + shift[:, None, None, :].astype(np.float32)
    od = hed @ RGB_FROM_HED.astype(np.float32)
    return np.clip(np.round(256.0 * np.exp(-od) - 1.0), 0, 255).astype(np.uint8)


def jitter_draws(sigma: float, seed: int, slide: int, patch_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) per patch: U(1-σ, 1+σ) and U(-σ, σ) per stain, keyed by (seed, slide, patch index), so a
    patch gets the same draw whatever the batching and whatever the other slides of the case."""
    draws = np.array([np.random.default_rng(np.random.SeedSequence([seed, slide, int(i)])).uniform(-1, 1, 6)
                      for i in patch_indices]).reshape(-1, 6)
    return 1.0 + sigma * draws[:, :3], sigma * draws[:, 3:]


def quality_draws(strength: float, seed: int, slide: int, patch_indices: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(blur sigma in px, JPEG quality) per patch: U(0, 2·s) and an integer in [95 - 70·s, 95], keyed like
    `jitter_draws` (its own stream), so a patch gets the same draw whatever the batching."""
    draws = np.array([np.random.default_rng(np.random.SeedSequence([seed, slide, int(i), 1])).uniform(0, 1, 2)
                      for i in patch_indices]).reshape(-1, 2)
    s = float(np.clip(strength, 0.0, 1.0))
    return 2.0 * s * draws[:, 0], np.round(95 - 70 * s * draws[:, 1]).astype(int)


def quality_jitter(patches: np.ndarray, blur_px: np.ndarray, jpeg_quality: np.ndarray) -> np.ndarray:
    """Each patch Gaussian-blurred by its sigma (px) and re-encoded as JPEG at its quality; (B, H, W, 3) uint8."""
    import io

    from PIL import Image, ImageFilter

    out = np.empty_like(patches)
    for k, patch in enumerate(np.asarray(patches, dtype=np.uint8)):
        image = Image.fromarray(patch)
        if blur_px[k] > 0.05:
            image = image.filter(ImageFilter.GaussianBlur(float(blur_px[k])))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(jpeg_quality[k]))
        out[k] = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return out


class PatchStain:
    """What the patch reader applies to one slide's patches: its Macenko map and/or the training jitters."""

    def __init__(self, stain: MacenkoStain | None, jitter: float = 0.0, seed: int = 0, quality: float = 0.0) -> None:
        self.stain = stain
        self.jitter = float(jitter)
        self.seed = int(seed)
        self.quality = float(quality)

    def __call__(self, patches_nhwc: np.ndarray, slide: int, patch_indices: np.ndarray) -> np.ndarray:
        """`patch_indices`: the patches' positions in the slide's grid (the jitter key)."""
        out = patches_nhwc
        if self.stain is not None:
            out = self.stain.normalise(out)
        if self.jitter > 0:
            out = hed_jitter(out, *jitter_draws(self.jitter, self.seed, slide, patch_indices))
        if self.quality > 0:
            out = quality_jitter(out, *quality_draws(self.quality, self.seed, slide, patch_indices))
        return out
