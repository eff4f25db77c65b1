"""Pixel-level checks of the slide and MRI renderers (in memory, no files)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from chimera_surv import synthetic
from chimera_surv.synthetic import MRIParams, SlideParams

SMALL = {"width": 1024, "height": 768}


def _slide_for(z: float, seed: int = 5, cohort: str = "A") -> SlideParams:
    return synthetic.slide_params(z, np.random.default_rng(0), seed, cohort, "biopsy", (1024, 768), 0.25, 4.0)


def test_render_slide_is_deterministic_and_seed_sensitive() -> None:
    params = SlideParams(seed=3, **SMALL)
    rgb_a, mask_a = synthetic.render_slide(params)
    rgb_b, mask_b = synthetic.render_slide(params)
    assert np.array_equal(rgb_a, rgb_b) and np.array_equal(mask_a, mask_b)
    rgb_c, _ = synthetic.render_slide(dataclasses.replace(params, seed=4))
    assert not np.array_equal(rgb_a, rgb_c)


@pytest.mark.parametrize("kind", ["biopsy", "resection"])
def test_mask_matches_the_tissue_in_the_slide(kind: str) -> None:
    params = SlideParams(seed=7, kind=kind, mask_mpp=4.0, **SMALL)
    rgb, mask = synthetic.render_slide(params)
    assert rgb.shape == (768, 1024, 3) and rgb.dtype == np.uint8
    assert mask.shape == (48, 64) and mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert 0.05 < mask.mean() < 0.9
    # Compare each mask pixel (16x16 slide pixels) with the slide's brightness there.
    blocks = rgb.mean(axis=2).reshape(48, 16, 64, 16).mean(axis=(1, 3))
    assert blocks[mask == 0].mean() > 225  # near-white glass
    assert blocks[mask == 1].mean() < 200  # stained tissue
    assert (mask[0] == 0).all() and (mask[:, 0] == 0).all()  # background all around


def test_mask_resolution_is_configurable() -> None:
    _, mask8 = synthetic.render_slide(SlideParams(seed=7, mask_mpp=8.0, **SMALL))
    _, mask1 = synthetic.render_slide(SlideParams(seed=7, mask_mpp=1.0, **SMALL))
    assert mask8.shape == (24, 32) and mask1.shape == (192, 256)
    with pytest.raises(ValueError):
        synthetic.render_slide(SlideParams(seed=7, width=1000, height=768))


def test_latent_risk_shows_in_the_slide() -> None:
    """Higher z: more and larger dark nuclei, a more basophilic (bluer, darker) tissue."""
    low_rgb, low_mask = synthetic.render_slide(_slide_for(-2.0))
    high_rgb, high_mask = synthetic.render_slide(_slide_for(2.0))

    def tissue_stats(rgb: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
        inside = np.kron(mask, np.ones((16, 16), dtype=np.uint8)).astype(bool)
        pixels = rgb[inside].astype(float)
        nuclear = (pixels.mean(axis=1) < 120).mean()  # dark haematoxylin pixels
        return nuclear, pixels[:, 0].mean()  # red falls as haematoxylin rises

    low_nuclear, low_red = tissue_stats(low_rgb, low_mask)
    high_nuclear, high_red = tissue_stats(high_rgb, high_mask)
    assert high_nuclear > 1.5 * low_nuclear
    assert high_red < low_red


def test_cohort_b_has_a_stain_shift() -> None:
    a, mask_a = synthetic.render_slide(_slide_for(0.0, cohort="A"))
    b, mask_b = synthetic.render_slide(_slide_for(0.0, cohort="B"))
    assert np.array_equal(mask_a, mask_b)  # same seed, same tissue; only the stain differs
    inside = np.kron(mask_a, np.ones((16, 16), dtype=np.uint8)).astype(bool)
    assert np.abs(a[inside].mean(axis=0) - b[inside].mean(axis=0)).max() > 3


def test_mri_volumes_grids_and_signal() -> None:
    low = MRIParams(seed=1, prostate_volume_ml=50.0, lesion_diameter_mm=8.0, lesion_adc=1400.0)
    high = dataclasses.replace(low, lesion_diameter_mm=16.0, lesion_adc=700.0)
    vol = synthetic.render_mri(low)
    assert set(vol) == {"t2w", "adc", "hbv", "mask"}
    t2, adc, hbv, mask = vol["t2w"], vol["adc"], vol["hbv"], vol["mask"]
    assert t2.array.shape == (20, 160, 160) and t2.spacing == (0.5, 0.5, 3.0)
    assert adc.array.shape == hbv.array.shape == (20, 42, 42) and adc.spacing == (2.0, 2.0, 3.0)
    assert mask.array.shape == t2.array.shape and mask.origin == t2.origin and mask.spacing == t2.spacing
    assert adc.origin != t2.origin  # DWI on its own grid
    assert mask.array.dtype == np.uint8 and set(np.unique(mask.array)) == {0, 1}
    assert t2.array.dtype == np.int16 and adc.array.dtype == np.int16 and hbv.array.dtype == np.float32
    volume_ml = mask.array.sum() * np.prod(t2.spacing) / 1000
    assert volume_ml == pytest.approx(50.0, rel=0.15)
    assert t2.array[mask.array == 1].mean() > t2.array[mask.array == 0].mean()
    again = synthetic.render_mri(low)
    assert all(np.array_equal(vol[k].array, again[k].array) for k in vol)
    # A larger lesion with lower ADC lowers the gland's mean ADC (same seed, same anatomy).
    adc_high_vol = synthetic.render_mri(high)["adc"].array
    gland_dwi = synthetic.render_mri(dataclasses.replace(low, lesion_adc=1650.0))["adc"].array > 1500
    assert adc_high_vol[gland_dwi].mean() < vol["adc"].array[gland_dwi].mean() - 20
