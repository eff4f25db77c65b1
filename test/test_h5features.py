"""`.h5` patch features in and out (Trident/CLAM convention): round trip, foreign files, and the recipe checks."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from chimera_surv.features import FeatureRecipe
from train.h5features import export_bag, import_case, read_h5, slide_stem

UNI = FeatureRecipe(encoder="uni", target_mpp=0.5, patch_size=224)


def _bag(rng: np.random.Generator, slides: int = 2, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    features = rng.standard_normal((slides * n, 1024)).astype(np.float32)
    coords = np.concatenate([np.repeat(np.arange(slides), n)[:, None],
                             rng.integers(0, 50_000, (slides * n, 2))], 1).astype(np.int64)
    return features, coords


def test_export_then_import_round_trips_bit_for_bit(tmp_path: Path) -> None:
    features, coords = _bag(np.random.default_rng(0))
    paths = export_bag(features, coords, UNI, tmp_path, ["case_a", "case_b"], level0_mpp=0.25)
    assert [p.name for p in paths] == ["case_a.h5", "case_b.h5"]
    item = read_h5(paths[0])
    assert item.encoder == "uni" and item.spacing() == 0.5
    assert item.attrs["patch_size"] == 224 and item.attrs["patch_size_level0"] == 448
    assert item.attrs["target_magnification"] == 20 and item.attrs["level0_magnification"] == 40
    back_features, back_coords = import_case(paths, UNI)
    assert back_features.tobytes() == features.tobytes() and np.array_equal(back_coords, coords)


def _trident_file(folder: Path, name: str, features: np.ndarray, magnification: int = 20, size: int = 224) -> Path:
    """What Trident's extract_patch_features writes (no encoder attribute: the folder names it)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("features", data=features).attrs.update({"name": name, "savetodir": str(folder)})
        handle.create_dataset("coords", data=np.arange(2 * len(features)).reshape(-1, 2)).attrs.update({
            "patch_size": size, "patch_size_level0": size * 40 // magnification, "level0_magnification": 40,
            "target_magnification": magnification, "overlap": 0, "name": name, "savetodir": str(folder)})
    return path


def test_trident_features_are_imported_and_checked_against_the_recipe(tmp_path: Path) -> None:
    features = np.random.default_rng(1).standard_normal((4, 1024)).astype(np.float32)
    good = _trident_file(tmp_path / "20x_224px_0px_overlap" / "features_uni_v1", "slide", features)
    got, coords = import_case([good], UNI)
    assert np.array_equal(got, features) and coords.shape == (4, 3) and (coords[:, 0] == 0).all()
    with pytest.raises(ValueError, match="encoder 'conch_v1'"):
        import_case([_trident_file(tmp_path / "features_conch_v1", "s", features[:, :512])], UNI)
    with pytest.raises(ValueError, match="0.25 µm/px"):
        import_case([_trident_file(tmp_path / "40x" / "features_uni_v1", "s", features, magnification=40)], UNI)
    with pytest.raises(ValueError, match="256-px"):
        import_case([_trident_file(tmp_path / "256" / "features_uni_v1", "s", features, size=256)], UNI)
    with pytest.raises(ValueError, match="not recorded"):
        import_case([_trident_file(tmp_path / "plain", "s", features)], UNI)
    assert import_case([_trident_file(tmp_path / "plain2", "s", features)], UNI, encoder="uni_v1")[0].shape == (4, 1024)


def test_clam_features_need_the_level0_spacing(tmp_path: Path) -> None:
    path = tmp_path / "clam.h5"
    features = np.random.default_rng(2).standard_normal((1, 3, 1024)).astype(np.float32)  # CLAM's (1, N, D)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("features", data=features)
        handle.create_dataset("coords", data=np.zeros((3, 2), np.int64)).attrs.update(
            {"patch_size": 224, "patch_level": 1, "downsample": np.array([2.0, 2.0])})
    with pytest.raises(ValueError, match="spacing is not recorded"):
        import_case([path], UNI, encoder="uni")
    got, _ = import_case([path], UNI, encoder="uni", level0_mpp=0.25)
    assert got.shape == (3, 1024)


def test_broken_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("features", data=np.full((2, 1024), np.nan, np.float32))
        handle.create_dataset("coords", data=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        read_h5(path)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("features", data=np.zeros((2, 1024), np.float32))
    with pytest.raises(ValueError, match="'coords'"):
        read_h5(path)
    assert slide_stem(Path("/x/1901_1.tif")) == "1901_1" and slide_stem(Path("a.ome.tiff")) == "a"
