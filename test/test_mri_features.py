"""MRI: geometry-preserving reads, resampling onto the T2 grid, prostate measurements and the 3D CNN entry.

The synthetic patient is defined in physical space (mm): a 15 mm-radius prostate with a 6 mm low-ADC lesion, so
every sequence can be written on its own grid and the expected measurements are known analytically.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from chimera_surv.case import MRIInput
from chimera_surv.encoders import write_encoder_weights
from chimera_surv.mri_features import MEASUREMENT_NAMES, MissingModality, mri_features
from chimera_surv.readers.mri import align_and_crop, read_mri
from chimera_surv.writers import write_mha

CENTRE = np.array([24.0, 24.0, 30.0])  # mm (x, y, z)
PROSTATE_R, LESION_R = 15.0, 6.0
LESION = CENTRE + np.array([4.0, 0.0, 0.0])


def _grid(shape_xyz: tuple[int, int, int], spacing: tuple[float, float, float], origin: tuple[float, float, float]):
    """Physical (x, y, z) coordinates of every voxel centre, arrays shaped (z, y, x)."""
    axes = [origin[i] + spacing[i] * np.arange(shape_xyz[i]) for i in range(3)]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    return x, y, z


def _field(kind: str, x, y, z) -> np.ndarray:
    in_prostate = (x - CENTRE[0]) ** 2 + (y - CENTRE[1]) ** 2 + (z - CENTRE[2]) ** 2 < PROSTATE_R ** 2
    in_lesion = (x - LESION[0]) ** 2 + (y - LESION[1]) ** 2 + (z - LESION[2]) ** 2 < LESION_R ** 2
    values = {"t2": (150, 300, 300), "adc": (2000, 1400, 700), "hbv": (20, 40, 80)}[kind]
    out = np.full(x.shape, values[0], np.float32)
    out[in_prostate] = values[1]
    out[in_prostate & in_lesion] = values[2]
    return out if kind != "mask" else in_prostate.astype(np.uint8)


def make_mri(directory: Path, adc_scale: float = 1.0, adc_origin_shift: float = 0.0) -> MRIInput:
    t2_spacing, dwi_spacing = (0.5, 0.5, 3.0), (2.0, 2.0, 3.0)
    t2_origin = (0.25, 0.25, 1.5)
    dwi_origin = (1.0 + adc_origin_shift, 1.0, 1.5)
    x, y, z = _grid((96, 96, 20), t2_spacing, t2_origin)
    write_mha(directory / "t2.mha", _field("t2", x, y, z), t2_spacing, t2_origin)
    prostate = ((x - CENTRE[0]) ** 2 + (y - CENTRE[1]) ** 2 + (z - CENTRE[2]) ** 2 < PROSTATE_R ** 2)
    write_mha(directory / "mask.mha", prostate.astype(np.uint8), t2_spacing, t2_origin)
    dx, dy, dz = _grid((24, 24, 20), dwi_spacing, dwi_origin)
    write_mha(directory / "adc.mha", _field("adc", dx, dy, dz) * adc_scale, dwi_spacing, dwi_origin)
    write_mha(directory / "hbv.mha", _field("hbv", dx, dy, dz), dwi_spacing, dwi_origin)
    return MRIInput(t2=directory / "t2.mha", adc=directory / "adc.mha", hbv=directory / "hbv.mha",
                    mask=directory / "mask.mha")


@pytest.fixture(scope="module")
def mri(tmp_path_factory: pytest.TempPathFactory) -> MRIInput:
    return make_mri(tmp_path_factory.mktemp("mri"))


def test_read_keeps_geometry_and_alignment_resamples_onto_t2(mri: MRIInput) -> None:
    volumes = read_mri(mri)
    assert volumes.adc.GetSpacing() == (2.0, 2.0, 3.0) and volumes.adc.GetOrigin() == (1.0, 1.0, 1.5)
    assert volumes.t2.GetSize() == (96, 96, 20)
    aligned = align_and_crop(volumes, margin_mm=5.0)
    assert aligned.adc.shape == aligned.t2.shape == aligned.hbv.shape == aligned.mask.shape
    assert aligned.spacing == (0.5, 0.5, 3.0)
    # the crop is the prostate's box plus 5 mm: 30 mm + 2 x 5 mm in x, i.e. about 80 voxels of 0.5 mm
    assert abs(aligned.t2.shape[2] - 80) <= 2
    # ADC resampled onto T2 voxels agrees with the physical field at the prostate centre
    centre = tuple(s // 2 for s in aligned.adc.shape)
    assert aligned.mask[centre]
    assert 650 <= aligned.adc[centre] <= 1450


def test_measurements_match_the_phantom(mri: MRIInput) -> None:
    vector, names = mri_features(mri)
    values = dict(zip(names, vector.tolist()))
    assert names == MEASUREMENT_NAMES and vector.dtype == np.float32 and np.isfinite(vector).all()
    assert values["prostate_volume_ml"] == pytest.approx(4 / 3 * math.pi * PROSTATE_R ** 3 / 1000, rel=0.05)
    assert values["extent_x_mm"] == pytest.approx(30.0, abs=1.5)
    assert values["adc_low_fraction"] == pytest.approx((LESION_R / PROSTATE_R) ** 3, abs=0.03)
    assert values["adc_low_volume_ml"] == pytest.approx(4 / 3 * math.pi * LESION_R ** 3 / 1000, rel=0.35)
    assert 1300 < values["adc_median"] < 1450
    assert values["adc_std"] > 100 and 650 <= values["adc_p10"] <= 1400
    assert values["t2_in_out_ratio"] == pytest.approx(2.0, rel=0.1)
    assert values["hbv_in_out_ratio"] == pytest.approx(2.0, rel=0.1)
    assert 1.2 < values["hbv_p95_ratio"] <= 2.05  # the lesion (~6 % of the gland) is bright on HBV


def test_adc_in_mm2_per_s_and_another_grid_give_the_same_measurements(mri: MRIInput, tmp_path: Path) -> None:
    reference, _ = mri_features(mri)
    scaled, _ = mri_features(make_mri(tmp_path, adc_scale=1e-6, adc_origin_shift=1.0))
    adc = [i for i, n in enumerate(MEASUREMENT_NAMES) if n.startswith("adc_")]
    assert np.allclose(reference[adc], scaled[adc], rtol=0.1, atol=0.02)


def test_missing_parts_raise_or_give_nan_when_allowed(mri: MRIInput, tmp_path: Path) -> None:
    no_adc = MRIInput(t2=mri.t2, adc=None, hbv=mri.hbv, mask=mri.mask)
    with pytest.raises(MissingModality, match="adc"):
        mri_features(no_adc)
    vector, names = mri_features(no_adc, allow_partial=True)
    values = dict(zip(names, vector.tolist()))
    assert math.isnan(values["adc_mean"]) and values["prostate_volume_ml"] > 10
    with pytest.raises(MissingModality, match="mask"):
        mri_features(MRIInput(t2=mri.t2, adc=mri.adc, hbv=mri.hbv), allow_partial=True)
    with pytest.raises(MissingModality):
        mri_features(None)
    empty = write_mha(tmp_path / "empty.mha", np.zeros((20, 96, 96), np.uint8), (0.5, 0.5, 3.0), (0.25, 0.25, 1.5))
    with pytest.raises(MissingModality, match="empty"):
        mri_features(MRIInput(t2=mri.t2, adc=mri.adc, hbv=mri.hbv, mask=empty))
    broken = tmp_path / "broken.mha"
    broken.write_bytes(Path(mri.t2).read_bytes()[:200])
    with pytest.raises(MissingModality, match="unreadable"):
        mri_features(MRIInput(t2=broken, adc=mri.adc, hbv=mri.hbv, mask=mri.mask))


def test_3d_cnn_entry_loads_local_weights(mri: MRIInput, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="medicalnet-resnet10"):
        mri_features(mri, kind="medicalnet-resnet10", encoder_root=tmp_path)
    write_encoder_weights("medicalnet-resnet10", tmp_path, seed=1)
    vector, names = mri_features(mri, kind="medicalnet-resnet10", encoder_root=tmp_path)
    assert vector.shape == (1536,) and len(names) == 1536 and np.isfinite(vector).all()
    assert names[0] == "medicalnet-resnet10_t2_0" and names[-1] == "medicalnet-resnet10_hbv_511"
    with pytest.raises(ValueError, match="not an MRI feature kind"):
        mri_features(mri, kind="test-tiny")
