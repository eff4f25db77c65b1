"""Task 1 MRI: read T2, ADC, HBV and the prostate mask with their geometry, bring them onto the T2 grid, crop.

Why: ADC and HBV come on a coarser diffusion grid than T2 (chimera-spec.md §3.2) and the prostate mask is on the
T2 grid, so any voxel-wise measurement first resamples them in physical space (origin, spacing and direction kept),
the way the organisers' picai_prep step does. Cropping to the prostate plus a margin bounds memory and time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chimera_surv.case import MRIInput

SEQUENCES = ("t2", "adc", "hbv")


class MissingModality(ValueError):
    """A modality (or a part of it the request needs) is absent or unreadable."""


@dataclass
class MRIVolumes:
    """SimpleITK images as read (t2, adc, hbv float32; mask uint8); a missing one is None."""

    t2: object | None
    adc: object | None
    hbv: object | None
    mask: object | None


@dataclass
class AlignedMRI:
    """Arrays (z, y, x) on the T2 grid, cropped around the prostate; spacing (x, y, z) in mm."""

    t2: np.ndarray
    adc: np.ndarray | None
    hbv: np.ndarray | None
    mask: np.ndarray  # bool
    spacing: tuple[float, float, float]


def read_volume(path: Path | str, mask: bool = False) -> object:
    """One .mha/.nii volume with its geometry; float32 for images, uint8 for masks."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise MissingModality(f"MRI file not found: {path}")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise MissingModality(f"unreadable MRI file {path.name}: {str(error).strip().splitlines()[-1]}") from error
    if image.GetDimension() != 3:
        raise MissingModality(f"{path.name}: expected a 3D volume, got {image.GetDimension()}D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        image = sitk.VectorIndexSelectionCast(image, 0)
    return sitk.Cast(image, sitk.sitkUInt8 if mask else sitk.sitkFloat32)


def read_mri(mri: MRIInput) -> MRIVolumes:
    """Read whichever of the four files are present (a missing path gives None)."""
    return MRIVolumes(
        t2=read_volume(mri.t2) if mri.t2 is not None else None,
        adc=read_volume(mri.adc) if mri.adc is not None else None,
        hbv=read_volume(mri.hbv) if mri.hbv is not None else None,
        mask=read_volume(mri.mask, mask=True) if mri.mask is not None else None,
    )


def resample_onto(image: object, reference: object, nearest: bool = False) -> object:
    """`image` resampled onto `reference`'s grid in physical space (linear; nearest neighbour for masks)."""
    import SimpleITK as sitk

    same = (image.GetSize() == reference.GetSize()
            and np.allclose(image.GetSpacing(), reference.GetSpacing())
            and np.allclose(image.GetOrigin(), reference.GetOrigin())
            and np.allclose(image.GetDirection(), reference.GetDirection()))
    if same:
        return image
    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    return sitk.Resample(image, reference, sitk.Transform(), interpolator, 0.0, image.GetPixelID())


def align_and_crop(volumes: MRIVolumes, margin_mm: float = 10.0) -> AlignedMRI:
    """ADC, HBV and mask on the T2 grid, cropped to the prostate's bounding box plus `margin_mm` on each side."""
    import SimpleITK as sitk

    if volumes.t2 is None:
        raise MissingModality("MRI: no T2 volume")
    if volumes.mask is None:
        raise MissingModality("MRI: no prostate mask")
    reference = volumes.t2
    mask = sitk.GetArrayFromImage(resample_onto(volumes.mask, reference, nearest=True)) > 0
    if not mask.any():
        raise MissingModality("MRI: the prostate mask is empty on the T2 grid")
    spacing = tuple(float(s) for s in reference.GetSpacing())  # (x, y, z)
    margin = [int(np.ceil(margin_mm / s)) for s in spacing[::-1]]  # (z, y, x) voxels
    nonzero = np.argwhere(mask)
    low = np.maximum(nonzero.min(0) - margin, 0)
    high = np.minimum(nonzero.max(0) + 1 + np.asarray(margin), mask.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))

    def crop(image: object | None) -> np.ndarray | None:
        if image is None:
            return None
        return sitk.GetArrayFromImage(resample_onto(image, reference))[box].astype(np.float32)

    return AlignedMRI(t2=crop(reference), adc=crop(volumes.adc), hbv=crop(volumes.hbv), mask=mask[box],
                      spacing=spacing)
