"""extract_case_bag: bags, multi-slide coords, worker invariance, cache, budget and every bad-input path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_slide_fixtures import corrupt_tile, make_slide

import chimera_surv.encode as encode_module
import chimera_surv.features as features_module
from chimera_surv.case import SlideInput
from chimera_surv.encoders import MissingWeights, load_encoder
from chimera_surv.features import Bag, FeatureRecipe, extract_case_bag
from chimera_surv.writers import write_mask

TINY = FeatureRecipe(encoder="test-tiny", weights="seeded", time_budget_s=None, batch_size=32)


def _recipe(**changes) -> FeatureRecipe:
    return FeatureRecipe.from_dict({**TINY.to_dict(), **changes})


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("features")
    a_wsi, a_mask, _ = make_slide(directory, "a")
    b_wsi, b_mask, _ = make_slide(directory, "b", height=2048, width=2048, seed=1)
    return {"dir": directory, "a": a_wsi, "a_mask": a_mask, "b": b_wsi, "b_mask": b_mask}


def test_recipe_round_trip_and_key() -> None:
    recipe = FeatureRecipe(encoder="uni", max_patches=3000)
    assert FeatureRecipe.from_dict(recipe.to_dict()) == recipe
    assert recipe.key() == FeatureRecipe(encoder="uni", max_patches=3000, num_workers=8, batch_size=256).key()
    for change in ({"encoder": "virchow2"}, {"target_mpp": 1.0}, {"patch_size": 256}, {"min_tissue": 0.5},
                   {"max_patches": 100}):
        assert FeatureRecipe.from_dict({**recipe.to_dict(), **change}).key() != recipe.key()
    assert recipe.key().startswith("uni-0.5mpp-224px-")
    with pytest.raises(ValueError, match="unknown FeatureRecipe fields"):
        FeatureRecipe.from_dict({"encoder": "uni", "spacing": 0.5})
    assert FeatureRecipe(encoder="uni").patch_budget() == (600 * 250)  # default budget at UNI's T4 rate


def test_two_slide_case_gives_one_bag_with_slide_indices(files) -> None:
    slides = [SlideInput(0, files["a"], files["a_mask"]), SlideInput(1, files["b"], files["b_mask"])]
    bag, issues = extract_case_bag(slides, TINY, None)
    assert isinstance(bag, Bag) and issues == []
    assert bag.features.dtype == np.float32 and bag.coords.dtype == np.int64
    assert bag.features.shape == (len(bag), 64) and bag.coords.shape == (len(bag), 3)
    assert set(bag.coords[:, 0].tolist()) == {0, 1}
    assert np.isfinite(bag.features).all()
    single, _ = extract_case_bag(slides[1:], TINY, None)
    assert np.array_equal(single.features, bag.features[bag.coords[:, 0] == 1])
    assert bag.meta["encoder"] == "test-tiny" and FeatureRecipe.from_dict(__import__("json").loads(
        bag.meta["recipe"])) == TINY


def test_bag_is_identical_with_one_and_two_workers(files) -> None:
    slides = [SlideInput(0, files["a"], files["a_mask"])]
    one, _ = extract_case_bag(slides, _recipe(num_workers=0), None)
    two, _ = extract_case_bag(slides, _recipe(num_workers=2, backend="openslide"), None)
    assert np.array_equal(one.coords, two.coords)
    assert np.array_equal(one.features, two.features)


def test_cache_is_reused_and_keyed_by_the_recipe(files, tmp_path: Path, monkeypatch) -> None:
    slides = [SlideInput(0, files["a"], files["a_mask"])]
    first, _ = extract_case_bag(slides, TINY, None, cache_dir=tmp_path)
    cached = list(tmp_path.glob(f"{TINY.key()}/*.safetensors"))
    assert len(cached) == 1

    def must_not_run(*args, **kwargs):
        raise AssertionError("features recomputed despite a cache hit")

    monkeypatch.setattr(features_module, "encode_grids", must_not_run)
    again, _ = extract_case_bag(slides, TINY, None, cache_dir=tmp_path)
    assert np.array_equal(first.features, again.features) and np.array_equal(first.coords, again.coords)
    with pytest.raises(AssertionError, match="recomputed"):  # another recipe is another cache entry
        extract_case_bag(slides, _recipe(min_tissue=0.5), None, cache_dir=tmp_path)


def test_budget_caps_the_case_deterministically(files) -> None:
    slides = [SlideInput(0, files["a"], files["a_mask"]), SlideInput(1, files["b"], files["b_mask"])]
    full, _ = extract_case_bag(slides, TINY, None)
    capped, issues = extract_case_bag(slides, _recipe(max_patches=10), None)
    assert len(capped) == 10
    assert any("capped" in issue for issue in issues)
    rows = {tuple(r) for r in full.coords.tolist()}
    assert {tuple(r) for r in capped.coords.tolist()} <= rows
    timed, _ = extract_case_bag(slides, _recipe(time_budget_s=1.0, throughput=7.0), None)
    assert len(timed) == 7


def test_empty_mask_gives_an_empty_bag_with_an_issue(files, tmp_path: Path) -> None:
    empty = write_mask(tmp_path / "empty.tif", np.zeros((192, 256), np.uint8), 4.0)
    bag, issues = extract_case_bag([SlideInput(0, files["a"], empty)], TINY, None)
    assert len(bag) == 0 and bag.features.shape == (0, 64) and bag.coords.shape == (0, 3)
    assert any("no tissue" in issue for issue in issues)


def test_misaligned_or_missing_mask_falls_back_to_a_threshold_estimate(files, tmp_path: Path) -> None:
    wrong = write_mask(tmp_path / "wrong.tif", np.ones((256, 100), np.uint8), 4.0)
    reference, _ = extract_case_bag([SlideInput(0, files["a"], files["a_mask"])], TINY, None)
    bag, issues = extract_case_bag([SlideInput(0, files["a"], wrong)], TINY, None)
    assert any("does not match" in issue for issue in issues)
    assert any("threshold" in issue for issue in issues)
    assert abs(len(bag) - len(reference)) <= 0.2 * len(reference)
    skipped, issues = extract_case_bag([SlideInput(0, files["a"], wrong)], _recipe(mask_fallback="skip"), None)
    assert len(skipped) == 0 and any("skipped" in issue for issue in issues)
    nomask, issues = extract_case_bag([SlideInput(0, files["a"], None)], TINY, None)
    assert len(nomask) > 0 and any("no tissue mask" in issue for issue in issues)


def test_bad_slides_become_issues_not_failures(files, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(files["a"].read_bytes()[:5000])
    slides = [SlideInput(0, truncated, files["a_mask"]), SlideInput(1, None, None),
              SlideInput(2, files["b"], files["b_mask"])]
    bag, issues = extract_case_bag(slides, TINY, None)
    assert set(bag.coords[:, 0].tolist()) == {2}
    assert any(issue.startswith("slide 0") and "corrupt" in issue for issue in issues)
    assert any(issue.startswith("slide 1") and "no WSI" in issue for issue in issues)


def test_no_resolution_slide_uses_the_documented_assumption(tmp_path: Path) -> None:
    wsi, mask, _ = make_slide(tmp_path, "nores", height=1024, width=1024, resolution=False)
    bag, issues = extract_case_bag([SlideInput(0, wsi, mask)], TINY, None)
    assert len(bag) > 0
    assert any("assumed 0.25" in issue for issue in issues)


def test_truncated_tiles_are_skipped_and_counted(files, tmp_path: Path) -> None:
    bad = corrupt_tile(files["a"], tmp_path / "bad.tif", tile_index=0, page=1)  # level 1 tile (0, 0) is glass
    bad = corrupt_tile(bad, tmp_path / "bad2.tif", tile_index=2 * 8 + 3, page=1)  # level 1 tile in tissue
    reference, _ = extract_case_bag([SlideInput(0, files["a"], files["a_mask"])], TINY, None)
    bag, issues = extract_case_bag([SlideInput(0, bad, files["a_mask"])], TINY, None)
    lost = len(reference) - len(bag)
    assert lost > 0
    assert any(f"{lost} unreadable patches skipped" in issue for issue in issues)
    kept = {tuple(r) for r in bag.coords.tolist()}
    same = np.array([tuple(r) in kept for r in reference.coords.tolist()])
    assert np.allclose(reference.features[same], bag.features, atol=1e-5)


def test_real_encoders_require_their_weights(files, tmp_path: Path) -> None:
    with pytest.raises(MissingWeights, match=str(tmp_path / "uni")):
        extract_case_bag([SlideInput(0, files["a"], files["a_mask"])], FeatureRecipe(encoder="uni"), tmp_path)


def test_scaled_decode_is_part_of_the_recipe_and_reaches_the_reader(files, monkeypatch) -> None:
    on, off = FeatureRecipe(encoder="uni"), FeatureRecipe(encoder="uni", scaled_decode=False)
    assert on.scaled_decode and on.key() != off.key()
    # with the DCT path on, only the tiles backend uses it: the backend becomes part of the key
    assert FeatureRecipe(encoder="uni", backend="pyvips").key() != on.key()
    assert FeatureRecipe(encoder="uni", backend="pyvips", scaled_decode=False).key() == off.key()
    # a recipe stored before the option existed (e.g. in a bundle) was extracted with the box filter
    stored = {k: v for k, v in on.to_dict().items() if k != "scaled_decode"}
    assert FeatureRecipe.from_dict(stored) == off
    seen = []
    real = encode_module.plan_blocks

    def spy(items, **kwargs):
        seen.append(kwargs.get("scaled_decode"))
        return real(items, **kwargs)

    monkeypatch.setattr(encode_module, "plan_blocks", spy)
    for recipe in (_recipe(max_patches=4), _recipe(max_patches=4, scaled_decode=False)):
        extract_case_bag([SlideInput(0, files["a"], files["a_mask"])], recipe, None)
    assert seen == [True, False]


def test_the_encoder_trunk_goes_through_the_compile_switch(files, monkeypatch) -> None:
    """CHIMERA_COMPILE is honoured by the extraction path itself (features.maybe_compile), not only by the benchmark."""
    from chimera_surv import features

    seen = []

    def spy(module, device):
        seen.append(device.type)
        return module

    monkeypatch.setattr(features, "maybe_compile", spy)
    bag, _ = extract_case_bag([SlideInput(0, files["a"], files["a_mask"])], TINY, None)
    assert seen == ["cpu"] and len(bag.features) > 0


class _Overflowing(torch.nn.Module):
    """The tiny encoder, except that every third patch of a batch gives inf features in 'half precision' (the
    default call) and, with `always`, every fifth gives NaN in fp32 too."""

    def __init__(self, always: bool = False) -> None:
        super().__init__()
        self.inner = load_encoder("test-tiny", None, "cpu", weights="seeded")
        self.spec, self.mean, self.always = self.inner.spec, self.inner.mean, always
        self.full_precision_rows = 0

    def embed(self, patches: torch.Tensor, full_precision: bool = False) -> torch.Tensor:
        out = self.inner.embed(patches).clone()
        if full_precision:
            self.full_precision_rows += len(patches)
        else:
            out[::3] = float("inf")
        if self.always:
            out[::5] = float("nan")
        return out


def test_half_precision_overflow_is_re_encoded_in_fp32(files, tmp_path: Path) -> None:
    slides = [SlideInput(0, files["a"], files["a_mask"])]
    plain, _ = extract_case_bag(slides, TINY, None)
    encoder = _Overflowing()
    bag, issues = extract_case_bag(slides, TINY, None, encoder=encoder, cache_dir=tmp_path)
    assert issues == [] and encoder.full_precision_rows > 0
    assert np.array_equal(bag.coords, plain.coords)
    # the re-encoded rows went through a smaller batch (float rounding of the BLAS blocking); the others are exact
    np.testing.assert_allclose(bag.features, plain.features, rtol=1e-5, atol=1e-6)
    assert (bag.features == plain.features).all(axis=1).sum() >= len(plain) // 2
    assert list(tmp_path.rglob("*.safetensors"))  # a rescued slide is an ordinary slide: cached


def test_features_non_finite_in_fp32_too_are_dropped_with_one_issue(files, tmp_path: Path) -> None:
    slides = [SlideInput(0, files["a"], files["a_mask"])]
    plain, _ = extract_case_bag(slides, TINY, None)
    bag, issues = extract_case_bag(slides, TINY, None, encoder=_Overflowing(always=True), cache_dir=tmp_path)
    dropped = len(plain) - len(bag)
    assert 0 < dropped < len(plain) and np.isfinite(bag.features).all()
    assert issues == [f"slide 0: {dropped} patches dropped: the encoder gave non-finite features for them, also in fp32"]
    kept = {tuple(c) for c in bag.coords.tolist()}
    assert kept < {tuple(c) for c in plain.coords.tolist()}
    same = np.array([tuple(c) in kept for c in plain.coords.tolist()])
    assert np.array_equal(bag.features, plain.features[same])  # the kept patches are the plain run's features
    assert not list(tmp_path.rglob("*.safetensors"))  # not cached: a reload would give the cause as unreadable tiles


def test_a_cache_with_non_finite_features_is_recomputed(files, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    slides = [SlideInput(0, files["a"], files["a_mask"])]
    first, _ = extract_case_bag(slides, TINY, None, cache_dir=tmp_path)
    (path,) = tmp_path.rglob("*.safetensors")
    data = load_file(str(path))
    data["features"][0, 0] = np.inf  # as a cache written before the guard could hold
    save_file(data, str(path))
    again, issues = extract_case_bag(slides, TINY, None, cache_dir=tmp_path)
    assert issues == [] and np.isfinite(again.features).all() and np.array_equal(again.features, first.features)
