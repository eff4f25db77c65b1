"""Task 1 MRI: read T2, ADC, HBV and the prostate mask with their geometry, bring them onto the T2 grid, crop.

Why: ADC and HBV come on a coarser diffusion grid than T2 (chimera-spec.md §3.2) and the prostate mask is on the
T2 grid, so any voxel-wise measurement first resamples them in physical space (origin, spacing and direction kept),
the way the organisers' picai_prep step does. Cropping to the prostate plus a margin bounds memory and time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chimera_surv.case import MRIInput
from chimera_surv.limits import MAX_MRI_VOXELS

SEQUENCES = ("t2", "adc", "hbv")
# ADC and HBV come on another grid; when less than this share of the prostate lies in their field of view, the
# resampled sequence would be mostly the fill value 0, so it is refused instead of measured.
MIN_PROSTATE_COVERAGE = 0.9


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
    """One .mha/.nii volume with its geometry; float32 for images, uint8 for masks.

    The header is checked before any voxel is decoded (3D, at most MAX_MRI_VOXELS, finite positive spacing), and
    the decoded voxels must be finite and, for an image, not all equal: anything else raises `MissingModality`
    naming the file, its size and the cause, so the MRI is dropped rather than filled and used.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise MissingModality(f"MRI file not found: {path}")
    label = f"{path.name} ({path.stat().st_size / 1e6:.1f} MB)"
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise MissingModality(f"unreadable MRI file {label}: {str(error).strip().splitlines()[-1]}") from error
    size = tuple(int(n) for n in reader.GetSize())
    if reader.GetDimension() != 3:
        raise MissingModality(f"{label}: expected a 3D volume, got {reader.GetDimension()}D")
    voxels = math.prod(size) * max(1, int(reader.GetNumberOfComponents()))
    if voxels > MAX_MRI_VOXELS:
        raise MissingModality(f"{label}: header declares {'x'.join(map(str, size))} = {voxels:,} voxels, over the "
                              f"limit of {MAX_MRI_VOXELS:,}; not decoded")
    spacing = reader.GetSpacing()
    if not all(math.isfinite(v) and v > 0 for v in spacing):
        raise MissingModality(f"{label}: unusable voxel spacing {tuple(spacing)}")
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise MissingModality(f"unreadable MRI file {label}: {str(error).strip().splitlines()[-1]}") from error
    except MemoryError as error:
        raise MissingModality(f"out of memory decoding {label} ({'x'.join(map(str, size))} voxels)") from error
    if image.GetNumberOfComponentsPerPixel() != 1:
        image = sitk.VectorIndexSelectionCast(image, 0)
    check_voxels(sitk.GetArrayViewFromImage(image), label, mask)
    return sitk.Cast(image, sitk.sitkUInt8 if mask else sitk.sitkFloat32)


def check_voxels(values: np.ndarray, label: str, mask: bool) -> None:
    """Refuse a volume with non-finite voxels, or an image whose voxels are all equal (blank or zero-filled)."""
    if values.size == 0:
        raise MissingModality(f"{label}: the volume has no voxels")
    if values.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            raise MissingModality(f"{label}: {bad:,} of {values.size:,} voxels are not finite (NaN or inf)")
    if not mask and values.min() == values.max():
        raise MissingModality(f"{label}: every voxel has the same value ({values.flat[0]}); the volume is blank")


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


def field_coverage(image: object, reference: object, mask: np.ndarray) -> float:
    """The share of the prostate voxels (on the reference grid) that lie inside `image`'s field of view."""
    import SimpleITK as sitk

    ones = sitk.Image(image.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(image)
    inside_field = sitk.GetArrayViewFromImage(resample_onto(ones, reference, nearest=True)) > 0
    return float(inside_field[mask].mean())


def align_and_crop(volumes: MRIVolumes, margin_mm: float = 10.0) -> AlignedMRI:
    """ADC, HBV and mask on the T2 grid, cropped to the prostate's bounding box plus `margin_mm` on each side."""
    import SimpleITK as sitk

    if volumes.t2 is None:
        raise MissingModality("MRI: no T2 volume")
    if volumes.mask is None:
        raise MissingModality("MRI: no prostate mask")
    reference = volumes.t2
    if not (sitk.GetArrayViewFromImage(volumes.mask) > 0).any():
        raise MissingModality("MRI: the prostate mask is empty (no voxel > 0)")
    mask = sitk.GetArrayFromImage(resample_onto(volumes.mask, reference, nearest=True)) > 0
    if not mask.any():
        raise MissingModality("MRI: the prostate mask lies outside the T2 field of view")
    for name in ("adc", "hbv"):
        image = getattr(volumes, name)
        if image is not None:
            share = field_coverage(image, reference, mask)
            if share < MIN_PROSTATE_COVERAGE:
                raise MissingModality(f"MRI: the {name.upper()} field of view covers {share:.0%} of the prostate "
                                      f"on the T2 grid (at least {MIN_PROSTATE_COVERAGE:.0%} needed)")
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
