"""Stain module: Macenko against torchstain (test-only oracle), per-slide normalisation in the patch path, HED
jitter determinism, and the site effects of the synthetic generator it is meant to undo."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_slide_fixtures import make_slide

from chimera_surv import synthetic
from chimera_surv.case import SlideInput
from chimera_surv.features import FeatureRecipe, extract_case_bag
from chimera_surv.stain import MacenkoStain, hed_jitter, jitter_draws, quality_draws, quality_jitter
from chimera_surv.writers import write_mask, write_wsi
from train.export import _inference_recipe

TINY = FeatureRecipe(encoder="test-tiny", weights="seeded", time_budget_s=None, batch_size=16)
SMALL = {"width": 1024, "height": 768, "mpp": 0.5, "mask_mpp": 4.0}


def _slide(cohort_site: str | None, seed: int = 3, z: float = 0.5):
    params = synthetic.slide_params(z, np.random.default_rng(seed), seed, "A", "resection", (1024, 768), 0.5, 4.0)
    if cohort_site:
        site = synthetic.site_effects(cohort_site)
        params = dataclasses.replace(params, **site.slide_fields(np.random.default_rng(seed)))
    return synthetic.render_slide(params)


def test_macenko_matches_torchstain_on_one_image():
    torchstain = pytest.importorskip("torchstain")
    rgb, _ = _slide(None)
    crop = rgb[200:456, 300:556]
    oracle = torchstain.normalizers.MacenkoNormalizer(backend="numpy")
    expected, _, _ = oracle.normalize(crop, stains=False)
    ours = MacenkoStain.fit(crop).normalise(crop)
    assert ours.shape == crop.shape and ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - expected.astype(int)).max() <= 1


def test_per_slide_macenko_brings_a_site_stain_back_towards_the_clean_one():
    clean, mask = _slide(None)
    shifted, _ = _slide("stain")
    up = np.kron(mask, np.ones((8, 8), np.uint8)).astype(bool)
    before = np.abs(clean[up].mean(0) - shifted[up].mean(0)).sum()
    norm_clean = MacenkoStain.fit(clean[up]).normalise(clean)
    norm_shifted = MacenkoStain.fit(shifted[up]).normalise(shifted)
    after = np.abs(norm_clean[up].mean(0) - norm_shifted[up].mean(0)).sum()
    assert before > 20 and after < before / 2


def test_macenko_refuses_an_unstained_image():
    with pytest.raises(ValueError, match="stained pixels"):
        MacenkoStain.fit(np.full((64, 64, 3), 235, np.uint8))


def test_hed_jitter_is_keyed_per_patch_and_bounded():
    patches = np.stack([_slide(None)[0][:64, :64]] * 4)
    a = hed_jitter(patches, *jitter_draws(0.05, 0, 1, np.arange(4)))
    b = hed_jitter(patches[2:], *jitter_draws(0.05, 0, 1, np.arange(2, 4)))
    assert np.array_equal(a[2:], b)  # the same patch gets the same draw in any batch
    assert not np.array_equal(a[0], a[1])
    same = hed_jitter(patches, np.ones((4, 3)), np.zeros((4, 3)))
    assert np.abs(same.astype(int) - patches.astype(int)).max() <= 1


def test_quality_jitter_blurs_and_recompresses_per_patch():
    patches = np.stack([_slide(None)[0][:64, :64]] * 4)
    blur, quality = quality_draws(1.0, 0, 1, np.arange(4))
    assert ((blur >= 0) & (blur <= 2)).all() and ((quality >= 25) & (quality <= 95)).all()
    again = quality_draws(1.0, 0, 1, np.arange(2, 4))
    assert np.array_equal(again[0], blur[2:]) and np.array_equal(again[1], quality[2:])  # keyed per patch
    out = quality_jitter(patches, blur, quality)
    assert out.shape == patches.shape and out.dtype == np.uint8
    assert np.array_equal(out, quality_jitter(patches, blur, quality))  # deterministic
    sharp = np.abs(np.diff(patches[0].astype(float), axis=0)).mean()
    strong = quality_jitter(patches[:1], np.array([2.0]), np.array([95]))
    assert np.abs(np.diff(strong[0].astype(float), axis=0)).mean() < 0.8 * sharp  # blur removes edges
    assert quality_draws(0.0, 0, 1, np.arange(3))[0].max() == 0 and (quality_draws(0.0, 0, 1, np.arange(3))[1] == 95).all()


@pytest.fixture(scope="module")
def site_slides(tmp_path_factory):
    directory = tmp_path_factory.mktemp("stain")
    out = {}
    for name, site in (("clean", None), ("stain", "stain")):
        rgb, mask = _slide(site)
        out[name] = SlideInput(0, write_wsi(directory / f"{name}.tif", rgb, 0.5),
                               write_mask(directory / f"{name}_mask.tif", mask, 4.0))
    wsi, mask, _ = make_slide(directory, "other", height=1024, width=1024, seed=2)
    out["other"] = SlideInput(1, wsi, mask)
    return out


def test_stain_normalisation_in_the_patch_path(site_slides):
    macenko = dataclasses.replace(TINY, stain_norm="macenko")
    assert TINY.key() == FeatureRecipe(encoder="test-tiny", weights="seeded", time_budget_s=None).key()
    assert macenko.key() != TINY.key()
    raw = {k: extract_case_bag([site_slides[k]], TINY, None)[0].features.mean(0) for k in ("clean", "stain")}
    norm = {k: extract_case_bag([site_slides[k]], macenko, None)[0].features.mean(0) for k in ("clean", "stain")}
    assert np.linalg.norm(norm["clean"] - norm["stain"]) < 0.5 * np.linalg.norm(raw["clean"] - raw["stain"])
    # per slide: the slide's features are the same alone or next to another slide of the case
    alone, _ = extract_case_bag([site_slides["clean"]], macenko, None)
    pair, issues = extract_case_bag([site_slides["clean"], site_slides["other"]], macenko, None)
    assert issues == [] and np.array_equal(alone.features, pair.features[pair.coords[:, 0] == 0])


def test_jitter_is_deterministic_and_left_out_of_the_exported_recipe(site_slides):
    jitter = dataclasses.replace(TINY, stain_jitter=0.05)
    a, _ = extract_case_bag([site_slides["clean"]], jitter, None)
    b, _ = extract_case_bag([site_slides["clean"]], dataclasses.replace(jitter, batch_size=5), None)
    plain, _ = extract_case_bag([site_slides["clean"]], TINY, None)
    # the same pixels whatever the batching (features then agree to float rounding of the batched conv)
    assert np.allclose(a.features, b.features, rtol=0, atol=1e-5)
    assert not np.allclose(a.features, plain.features, rtol=0, atol=1e-3)
    exported = _inference_recipe(jitter.to_dict())
    assert "stain_jitter" not in exported and FeatureRecipe.from_dict(exported).stain_jitter == 0.0
    quality = dataclasses.replace(TINY, quality_jitter=0.5)
    assert quality.key() != TINY.key()
    q, _ = extract_case_bag([site_slides["clean"]], quality, None)
    assert not np.allclose(q.features, plain.features, rtol=0, atol=1e-3)
    assert np.array_equal(q.features, extract_case_bag([site_slides["clean"]], quality, None)[0].features)
    assert "quality_jitter" not in _inference_recipe(quality.to_dict())
    with pytest.raises(ValueError, match="stain_norm"):
        extract_case_bag([site_slides["clean"]], dataclasses.replace(TINY, stain_norm="reinhard"), None)


def test_site_effects_change_the_observation_not_the_patient():
    genes = tuple(synthetic.gene_panel(80))
    clean_opts = synthetic.CohortOptions(wsi_size=(1024, 768), genes=genes, cohort_b_fraction=0.0)
    shifted_opts = dataclasses.replace(clean_opts, sites={"A": synthetic.site_effects("all")})
    clean = synthetic.make_cohort(3, 12, 4, clean_opts)
    shifted = synthetic.make_cohort(3, 12, 4, shifted_opts)
    for c, s in zip(clean, shifted):
        assert (c.latent_risk, c.time, c.event, c.modality_views) == (s.latent_risk, s.time, s.event,
                                                                      s.modality_views)
        assert c.rna != s.rna and c.slides[0].stain_h_od is None and s.slides[0].stain_h_od is not None
        assert s.slides[0].blur_um > 0 and s.slides[0].jpeg_quality is not None
    assert any(c.clinical != s.clinical for c, s in zip(clean, shifted))
    none = synthetic.make_cohort(3, 12, 4, dataclasses.replace(clean_opts, sites={"A": synthetic.site_effects("none")}))
    assert [p.rna for p in none] == [p.rna for p in clean] and [p.slides for p in none] == [p.slides for p in clean]
    assert synthetic.site_effects("rna", strength=0.0).rna is False
    with pytest.raises(ValueError, match="unknown site effect"):
        synthetic.site_effects("scanner")


def test_site_rendering_defaults_are_byte_identical_and_effects_are_visible():
    params = synthetic.SlideParams(seed=7, **SMALL)
    clean, _ = synthetic.render_slide(params)
    again, _ = synthetic.render_slide(dataclasses.replace(params, stain_scale=(1.0, 1.0), blur_um=0.0))
    assert np.array_equal(clean, again)
    blurred, _ = synthetic.render_slide(dataclasses.replace(params, blur_um=1.0))
    jpeg, _ = synthetic.render_slide(dataclasses.replace(params, jpeg_quality=20))
    high = lambda a: np.abs(np.diff(a.astype(float), axis=1)).mean()
    assert high(blurred) < 0.7 * high(clean)
    assert 0 < np.abs(jpeg.astype(int) - clean.astype(int)).mean() < 10


def test_make_cases_site_option_parses_cohort_effect_and_strength():
    from chimera_surv.make_cases import build_parser

    args = build_parser().parse_args(["--layout", "training", "--task", "3", "--out", "/tmp/x",
                                      "--site", "B=all:0.5", "A=stain"])
    sites = dict(args.site)
    assert sites["A"] == synthetic.site_effects("stain")
    assert sites["B"] == synthetic.site_effects("all", 0.5) and sites["B"].blur_um == pytest.approx(0.3)
