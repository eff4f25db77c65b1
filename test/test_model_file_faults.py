"""Model files are validated when they load, not trusted until predict time (issue 20, class 1).

A tree with a cycle, a negative or out-of-range child, a split on a feature the design lacks, a NaN threshold, a
coefficient vector of the wrong length or a zero risk scale is refused by `load_bundle` with the file and the field
named; a bundle that fails while predicting is marked broken (prior), never rerun on fewer inputs. `.h5` features
are checked by their declared size before reading and every failure names the file; a corrupt encoder weight file
is blamed on itself, not on the slides it was to encode.
"""

from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from fault_builders import WSI_DIM, classical_bundle, clinical_values, rewrite, tree_arrays

from chimera_surv.bundle import BundleError, InputMismatch, ModalityInputs, load_bundle
from chimera_surv.classical import TreeEnsemblePredictor
from chimera_surv.features import Bag
from chimera_surv.readers.clinical import parse_clinical

TREE = "m0.p1.pred."


def _set(key: str, value) -> callable:
    return lambda arrays: arrays.__setitem__(key, np.asarray(value))


def _bundle(tmp_path: Path) -> Path:
    return classical_bundle(tmp_path / "bundle")


def test_the_valid_bundle_loads_and_predicts(tmp_path):
    bundle = load_bundle(_bundle(tmp_path))
    record = parse_clinical(clinical_values(np.random.default_rng(1)), bundle.clinical_schema)
    bag = Bag(np.random.default_rng(2).normal(size=(6, WSI_DIM)).astype(np.float32), np.zeros((6, 3), np.int64))
    full, clinical_only = bundle.predict(ModalityInputs(clinical=record, wsi=bag)), \
        bundle.predict(ModalityInputs(clinical=record))
    assert np.isfinite([full.value, clinical_only.value]).all() and full.risk != clinical_only.risk


BROKEN_TREES = {
    "cycle": (_set(TREE + "left", [1, 3, -1, -1, -1, 6, 5, -1]), "reached twice|one child"),
    "cycle_both_children": (lambda a: (a.__setitem__(TREE + "left", np.array([1, 0, -1, -1, -1, 6, -1, -1])),
                                       a.__setitem__(TREE + "right", np.array([2, 4, -1, -1, -1, 7, -1, -1]))),
                            "reached twice"),
    "negative_child": (_set(TREE + "left", [1, -5, -1, -1, -1, 6, -1, -1]), r"'left'\[1\] = -5 is out of range"),
    "right_out_of_range": (_set(TREE + "right", [99, 4, -1, -1, -1, 7, -1, -1]), r"'right'\[0\] = 99"),
    "shared_subtree": (_set(TREE + "right", [2, 4, -1, -1, -1, 3, -1, -1]), "reached twice"),
    "root_into_other_tree": (_set(TREE + "roots", [0, 1]), "reached twice"),
    "feature_out_of_range": (_set(TREE + "feature", [0, 7, -2, -2, -2, 1, -2, -2]), r"'feature'\[1\] = 7"),
    "negative_feature": (_set(TREE + "feature", [-1, 1, -2, -2, -2, 1, -2, -2]), r"'feature'\[0\] = -1"),
    "nan_threshold": (_set(TREE + "threshold", [np.nan, 0.5, -2, -2, -2, -0.3, -2, -2]), "non-finite|not finite"),
    "inf_value": (_set(TREE + "value", [0, 0, np.inf, 0, 0, 0, 0, 0]), "non-finite|not finite"),
    "short_value": (_set(TREE + "value", [0.0, 1.0]), "'value' has 2 entries"),
    "2d_left": (_set(TREE + "left", np.zeros((2, 4), np.int64)), "dimension"),
    "float_left": (_set(TREE + "left", np.zeros(8)), "dtype"),
    "missing_array": (lambda a: a.pop(TREE + "roots"), "'roots' is missing"),
    "coef_too_short": (_set("m0.p0.pred.coef", np.zeros(3)), "coef"),
    "nan_coef": (_set("m0.p0.pred.coef", np.full(len(tree_arrays()["left"]), np.nan)), "non-finite|coef"),
    "pca_wrong_shape": (_set("m0.p1.b0.pca_components", np.zeros((2, 5))), "member 0"),
    "zero_block_scale": (_set("m0.p1.b0.scale", np.zeros(2)), "'scale' must hold positive values"),
}


@pytest.mark.parametrize("fault", sorted(BROKEN_TREES))
def test_a_broken_member_is_refused_at_load_naming_file_and_field(tmp_path, fault):
    edit, field = BROKEN_TREES[fault]
    path = rewrite(_bundle(tmp_path), arrays=edit)
    started = time.perf_counter()
    with pytest.raises(BundleError, match=field) as info:
        load_bundle(path)
    assert time.perf_counter() - started < 10  # refused, never walked forever
    message = str(info.value)
    assert str(path) in message and "\n" not in message


BROKEN_DOCS = {
    "n_trees": (lambda d: d["members"][0]["model"]["parts"][1]["predictor"].__setitem__("n_trees", 3), "n_trees"),
    "n_features_bool": (lambda d: d["members"][0]["model"]["parts"][1]["predictor"].__setitem__("n_features", True),
                        "n_features"),
    "zero_risk_scale": (lambda d: d["members"][0].__setitem__("risk_scale", 0.0), "risk_scale"),
    "nan_init": (lambda d: d["members"][0]["model"]["parts"][1]["predictor"].__setitem__("init", "nan"), "init"),
    "bad_reduce": (lambda d: d["members"][0]["model"]["parts"][1]["predictor"].__setitem__("reduce", "max"),
                   "reduce"),
    "input_dims": (lambda d: d["members"][0].__setitem__("input_dims", {"wsi": -3, "clinical": 4}), "input_dims"),
}


@pytest.mark.parametrize("fault", sorted(BROKEN_DOCS))
def test_a_broken_description_is_refused_at_load(tmp_path, fault):
    edit, field = BROKEN_DOCS[fault]
    path = rewrite(_bundle(tmp_path), doc=edit)
    with pytest.raises(BundleError, match=field) as info:
        load_bundle(path)
    assert str(path) in str(info.value)


def test_the_tree_walk_has_a_visit_bound_even_without_validation():
    """Defence in depth: a cycle built in memory (never loaded) raises instead of hanging."""
    t = tree_arrays()
    t["left"][1], t["right"][1] = 0, 0
    trees = TreeEnsemblePredictor(t["left"], t["right"], t["feature"], t["threshold"], t["value"], t["roots"], 2)
    started = time.perf_counter()
    with pytest.raises(ValueError, match="longer than"):
        trees.predict(np.array([[-1.0, 0.0]]))
    assert time.perf_counter() - started < 10


# -- the fallback chain: a bundle that raised is not rerun ------------------------------------------------------


class _FakeBundle:
    """A loaded bundle whose predict fails as told; counts the calls."""

    def __init__(self, failures: list[Exception]) -> None:
        from chimera_surv.readers.clinical import load_schema

        self.failures, self.calls, self.inputs = list(failures), 0, []
        self.modalities, self.clinical_schema, self.path = ["clinical"], load_schema(3), Path("model/x")

    def predict(self, inputs):
        from chimera_surv.bundle import BundlePrediction

        self.calls += 1
        self.inputs.append(inputs)
        if self.failures:
            raise self.failures.pop(0)
        return BundlePrediction(value=12.0, risk=0.0, used=["clinical"])


def _run_chain(monkeypatch, bundle):
    import chimera_surv.bundle as bundle_module
    from chimera_surv.case import Case
    from chimera_surv.predict import DegradedLog, bundle_prediction
    from chimera_surv.tasks import TASKS

    monkeypatch.setattr(bundle_module, "load_bundle", lambda *a, **k: bundle)
    degraded = DegradedLog()
    case = Case(task=TASKS[3], clinical=clinical_values(np.random.default_rng(0)))
    return bundle_prediction(case, Path("model"), None, "cpu", degraded), degraded.entries


def test_a_bundle_that_fails_while_predicting_is_not_rerun(monkeypatch):
    bundle = _FakeBundle([IndexError("index 99 is out of bounds for axis 0 with size 8")])
    result, entries = _run_chain(monkeypatch, bundle)
    assert result is None and bundle.calls == 1  # straight to the prior, never the same bundle on fewer inputs
    assert entries[-1]["stage"] == "model" and "marked broken" in entries[-1]["action"]
    assert "model/x" in entries[-1]["cause"] and "IndexError" in entries[-1]["cause"]


def test_an_input_that_does_not_fit_drops_that_modality_only(monkeypatch):
    bundle = _FakeBundle([InputMismatch("clinical", "clinical vector has 3 values, the network expects 9")])
    result, entries = _run_chain(monkeypatch, bundle)
    assert result == (12.0, ["clinical"]) and bundle.calls == 2
    assert bundle.inputs[0].clinical is not None and bundle.inputs[1].clinical is None
    assert entries[-1]["action"] == "retrying without clinical"


@pytest.mark.parametrize("modality, calls", [("clinical", 2), ("wsi", 1), ("no-such-modality", 1)])
def test_the_retries_are_bounded(monkeypatch, modality, calls):
    """The same modality blamed again (already dropped) or one the inputs do not hold: the bundle is at fault."""
    bundle = _FakeBundle([InputMismatch(modality, "x")] * 50)
    result, entries = _run_chain(monkeypatch, bundle)
    assert result is None and bundle.calls == calls and "marked broken" in entries[-1]["action"]


# -- .h5 features ---------------------------------------------------------------------------------------------


def test_an_h5_declaring_a_huge_dataset_is_refused_before_reading(tmp_path):
    from chimera_surv.readers.precomputed import read_h5

    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as handle:  # declared, never written: a few KB on disk
        handle.create_dataset("features", shape=(100_000_000, 64), dtype="float32", chunks=(1024, 64))
        handle.create_dataset("coords", shape=(100_000_000, 2), dtype="int64", chunks=(1024, 2))
    assert path.stat().st_size < 100_000
    started = time.perf_counter()
    with pytest.raises(ValueError, match="limit") as info:
        read_h5(path)
    assert time.perf_counter() - started < 5 and str(path) in str(info.value)


def _h5_faults(tmp_path: Path) -> dict[str, Path]:
    files = {}
    files["garbage"] = tmp_path / "garbage.h5"
    files["garbage"].write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)
    files["empty"] = tmp_path / "empty.h5"
    files["empty"].write_bytes(b"")
    files["group"] = tmp_path / "group.h5"
    with h5py.File(files["group"], "w") as handle:
        handle.create_group("features")
        handle.create_dataset("coords", data=np.zeros((2, 2), np.int64))
    files["strings"] = tmp_path / "strings.h5"
    with h5py.File(files["strings"], "w") as handle:
        handle.create_dataset("features", data=np.array([b"a", b"b"]))
        handle.create_dataset("coords", data=np.zeros((2, 2), np.int64))
    files["scalar"] = tmp_path / "scalar.h5"
    with h5py.File(files["scalar"], "w") as handle:
        handle.create_dataset("features", data=1.0)
        handle.create_dataset("coords", data=np.zeros((1, 2), np.int64))
    files["truncated"] = tmp_path / "truncated.h5"
    with h5py.File(tmp_path / "whole.h5", "w") as handle:
        handle.create_dataset("features", data=np.ones((500, 64), np.float32))
        handle.create_dataset("coords", data=np.zeros((500, 2), np.int64))
    files["truncated"].write_bytes((tmp_path / "whole.h5").read_bytes()[:4000])
    files["missing"] = tmp_path / "missing.h5"
    return files


@pytest.mark.parametrize("fault", ["garbage", "empty", "group", "strings", "scalar", "truncated", "missing"])
def test_every_h5_failure_names_the_file(tmp_path, fault):
    from chimera_surv.readers.precomputed import read_h5

    path = _h5_faults(tmp_path)[fault]
    with pytest.raises(ValueError) as info:
        read_h5(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


# -- encoder weight files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"not safetensors at all", b"\xff" * 8 + b"{}" * 10])
def test_a_corrupt_encoder_weight_file_is_named_not_the_slides(tmp_path, content):
    from chimera_surv.encoders import WeightFileError, load_encoder
    from chimera_surv.predict import DegradedLog, attempt

    weights = tmp_path / "encoders" / "test-tiny" / "model.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(content)
    with pytest.raises(WeightFileError, match="model.safetensors"):
        load_encoder("test-tiny", tmp_path / "encoders", "cpu", weights="seeded")
    degraded = DegradedLog()
    attempt(degraded, "wsi", "predicting without slides",
            lambda: load_encoder("test-tiny", tmp_path / "encoders", "cpu", weights="seeded"),
            reading="slide_1.tif (12.0 MB), slide_1_mask.tif (0.1 MB)")
    cause = degraded.entries[0]["cause"]
    assert str(weights) in cause and "slide_1.tif" not in cause


def test_non_finite_encoder_weights_are_refused_naming_the_file(tmp_path):
    from safetensors.torch import load_file, save_file

    from chimera_surv.encoders import WeightFileError, load_encoder, write_encoder_weights

    path = write_encoder_weights("test-tiny", tmp_path)
    tensors = load_file(str(path))
    key = min(k for k, v in tensors.items() if v.is_floating_point())
    tensors[key][...] = float("nan")
    save_file(tensors, str(path))
    with pytest.raises(WeightFileError, match=f"{key}.*non-finite"):
        load_encoder("test-tiny", tmp_path, "cpu", weights="seeded")


# -- regressions found by test_fault_properties.py (shrunk examples) ---------------------------------------------


@pytest.mark.parametrize("edit, arrays, field", [
    (lambda d: d["members"][0].__setitem__("risk_shift", None), None, "risk_shift"),
    (lambda d: d["genes"].__setitem__(0, []), None, "genes"),
    (lambda d: d["modalities"].append("dna"), None, "modalities"),
    (None, lambda a: a.__setitem__("m0.encoders.clinical.body.0.bias", a["m0.encoders.clinical.body.0.bias"][:-1]),
     "size mismatch"),
])
def test_network_bundle_faults_are_one_line_naming_the_bundle(tmp_path, edit, arrays, field):
    from fault_builders import network_bundle

    path = rewrite(network_bundle(tmp_path / "net"), arrays=arrays, doc=edit)
    with pytest.raises(BundleError, match=field) as info:
        load_bundle(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_precomputed_mri_vector_declaring_a_huge_size_is_refused_before_reading(tmp_path):
    from chimera_surv.readers.precomputed import read_mri_vector

    path = tmp_path / "mri.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("features", shape=(1, 500_000_000), dtype="float64", chunks=(1, 65536))
        handle["features"].attrs["kind"] = "measurements"
    started = time.perf_counter()
    with pytest.raises(ValueError, match="mri.h5: declares 500000000 values"):
        read_mri_vector(path, "measurements", None)
    assert time.perf_counter() - started < 5
