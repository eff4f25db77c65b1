"""Task 1 MRI → one feature vector: interpretable prostate measurements, or a frozen 3D CNN embedding.

Why measurements first: they need no weights, are meaningful to a urologist (gland volume drives PSA density;
low ADC marks dense, likely significant cancer) and are robust with ~100 training patients, where a 1536-d
embedding mostly adds variance. The 3D CNN (MedicalNet-style ResNet) is there for when local weights exist.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chimera_surv.case import MRIInput
from chimera_surv.readers.mri import AlignedMRI, MissingModality, align_and_crop, read_mri

# ADC below 1000 x 10^-6 mm^2/s is the usual threshold for restricted diffusion in prostate cancer.
LOW_ADC = 1000.0
MEASUREMENT_NAMES = [
    "prostate_volume_ml", "extent_x_mm", "extent_y_mm", "extent_z_mm",
    "adc_mean", "adc_median", "adc_p10", "adc_std", "adc_low_fraction", "adc_low_volume_ml",
    "t2_in_out_ratio", "t2_cv", "t2_p10_ratio",
    "hbv_in_out_ratio", "hbv_p95_ratio",
]
__all__ = ["MEASUREMENT_NAMES", "MissingModality", "measurements", "mri_features"]


def _adc_in_micro(values: np.ndarray) -> np.ndarray:
    """ADC in 10^-6 mm^2/s: scanners export either that or mm^2/s (values < 0.05), which is rescaled."""
    median = float(np.median(values)) if values.size else 0.0
    return values * 1e6 if 0 < median < 0.05 else values


def _ratio(a: float, b: float) -> float:
    return float(a / b) if abs(b) > 1e-6 else float("nan")


def measurements(aligned: AlignedMRI) -> np.ndarray:
    """The MEASUREMENT_NAMES vector (NaN where a sequence is missing)."""
    mask = aligned.mask
    sx, sy, sz = aligned.spacing
    voxel_ml = sx * sy * sz / 1000.0
    nz = np.argwhere(mask)
    extent = (nz.max(0) - nz.min(0) + 1) * np.array([sz, sy, sx])  # (z, y, x) mm
    out = {"prostate_volume_ml": mask.sum() * voxel_ml, "extent_x_mm": extent[2], "extent_y_mm": extent[1],
           "extent_z_mm": extent[0]}
    outside = ~mask
    if aligned.adc is not None:
        adc = _adc_in_micro(aligned.adc[mask])
        low = adc < LOW_ADC
        out.update(adc_mean=adc.mean(), adc_median=np.median(adc), adc_p10=np.percentile(adc, 10),
                   adc_std=adc.std(), adc_low_fraction=low.mean(), adc_low_volume_ml=low.sum() * voxel_ml)
    t2 = aligned.t2[mask]
    t2_out = aligned.t2[outside] if outside.any() else t2
    out.update(t2_in_out_ratio=_ratio(t2.mean(), t2_out.mean()), t2_cv=_ratio(t2.std(), t2.mean()),
               t2_p10_ratio=_ratio(np.percentile(t2, 10), np.median(t2)))
    if aligned.hbv is not None:
        hbv = aligned.hbv[mask]
        hbv_out = aligned.hbv[outside] if outside.any() else hbv
        out.update(hbv_in_out_ratio=_ratio(hbv.mean(), hbv_out.mean()),
                   hbv_p95_ratio=_ratio(np.percentile(hbv, 95), np.median(hbv)))
    return np.array([out.get(name, np.nan) for name in MEASUREMENT_NAMES], dtype=np.float32)


def volume_tensor(aligned: AlignedMRI, shape_dhw: tuple[int, int, int]) -> np.ndarray:
    """(3, D, H, W) float32: T2/ADC/HBV crops resized to `shape_dhw`, each z-scored inside the crop."""
    import torch

    channels = []
    for array in (aligned.t2, aligned.adc, aligned.hbv):
        if array is None:
            raise MissingModality("MRI encoder needs T2, ADC and HBV")
        x = torch.from_numpy(np.ascontiguousarray(array))[None, None]
        x = torch.nn.functional.interpolate(x, size=shape_dhw, mode="trilinear", align_corners=False)[0, 0]
        channels.append(((x - x.mean()) / (x.std() + 1e-6)).numpy())
    return np.stack(channels).astype(np.float32)


def mri_features(mri: MRIInput | None, kind: str = "measurements", encoder_root: Path | None = None,
                 allow_partial: bool = False, device: str | None = None) -> tuple[np.ndarray, list[str]]:
    """(vector float32, names) for one case.

    kind="measurements": MEASUREMENT_NAMES (no weights). kind=<MRI encoder name> (e.g. "medicalnet-resnet10"): its
    embedding, loaded from `encoder_root`. Raises `MissingModality` when T2 or the mask is missing, and, unless
    `allow_partial` (measurements only: NaN for the missing sequence's entries), when ADC or HBV is missing.
    """
    if mri is None or not mri.present():
        raise MissingModality("no MRI for this case")
    needed = ["t2", "mask"] + ([] if allow_partial and kind == "measurements" else ["adc", "hbv"])
    missing = [k for k in needed if getattr(mri, k) is None]
    if missing:
        raise MissingModality(f"MRI is missing {', '.join(missing)}")
    aligned = align_and_crop(read_mri(mri))
    if kind == "measurements":
        return measurements(aligned), list(MEASUREMENT_NAMES)
    import torch

    from chimera_surv.encoders import get_spec, load_encoder

    spec = get_spec(kind)
    if spec.modality != "mri":
        raise ValueError(f"'{kind}' is not an MRI feature kind (use 'measurements' or an MRI encoder)")
    encoder = load_encoder(kind, encoder_root, device=device or "cpu")
    volume = volume_tensor(aligned, tuple(spec.extra["input_shape_dhw"]))
    vector = encoder.embed(torch.from_numpy(volume)[None])[0].numpy().astype(np.float32)
    names = [f"{kind}_{seq}_{i}" for seq in ("t2", "adc", "hbv") for i in range(spec.dim // 3)]
    return vector, names
