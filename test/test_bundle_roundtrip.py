"""A bundle saved from fitted parts loads back, predicts like the networks it holds, and is byte-deterministic."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from chimera_surv.bundle import (
    BundleError,
    BundlePrediction,
    ModalityInputs,
    NoUsableModality,
    load_bundle,
    make_batch,
)
from chimera_surv.bundle_save import MemberSpec, save_bundle
from chimera_surv.features import Bag, FeatureRecipe
from chimera_surv.models import build_network
from chimera_surv.preprocess import ClinicalEncoder, RNANormaliser
from chimera_surv.readers.clinical import load_schema, parse_clinical
from chimera_surv.readers.rna import parse_rna
from chimera_surv.survival.calibration import CALIBRATIONS

GENES = [f"G{i}" for i in range(12)]
WSI_DIM = 8


def _clinical(rng: np.random.Generator) -> dict:
    return {"age": float(rng.integers(50, 85)), "sex": str(rng.choice(["Male", "Female"])),
            "stage": str(rng.choice(["TaHG", "T1HG"])), "BRS": str(rng.choice(["BRS1", "BRS2", "BRS3"])),
            "no_instillations": float(rng.integers(0, 30))}


def _network_config(dims: dict[str, int]) -> dict:
    return {"modalities": {"wsi": {"dim": dims["wsi"], "encoder": {"name": "abmil_gated", "hidden": 8,
                                                                    "attn_hidden": 4, "dropout": 0.0}},
                           "clinical": {"dim": dims["clinical"], "encoder": {"name": "mlp", "hidden": [6]}},
                           "rna": {"dim": dims["rna"], "encoder": {"name": "mlp", "hidden": [6]}}},
            "fusion": {"name": "concat_mlp", "hidden": [8], "dropout": 0.0}, "head": {"name": "cox"}}


def _build(tmp_path, name="b", n_members=2):
    """Fit preprocessing on a tiny random cohort, make seeded networks, save a bundle; return what is needed."""
    rng = np.random.default_rng(0)
    schema = load_schema(3)
    records = [parse_clinical(_clinical(rng), schema) for _ in range(20)]
    rna = np.abs(rng.normal(size=(20, len(GENES)))).astype(np.float32) * 10
    clinical_encoder = ClinicalEncoder().fit(records, schema)
    rna_normaliser = RNANormaliser(log1p=True, top_k=6).fit(rna)
    dims = {"wsi": WSI_DIM, "clinical": clinical_encoder.dim, "rna": rna_normaliser.dim}
    specs, networks = [], []
    for k in range(n_members):
        torch.manual_seed(k)
        net = build_network(_network_config(dims)).eval()
        networks.append(net)
        specs.append(MemberSpec(name=f"m{k}", network_config=_network_config(dims), input_dims=dims,
                                state_dict=net.state_dict(),
                                preprocessing={"clinical": clinical_encoder.to_dict(),
                                               "rna": rna_normaliser.to_dict()},
                                risk_shift=0.1 * k, risk_scale=1.0 + k))
    times, events = rng.uniform(5, 100, 20), rng.integers(0, 2, 20)
    calibration = CALIBRATIONS.build({"name": "km_quantile"}).fit(rng.normal(size=20), times, events)
    recipe = FeatureRecipe(encoder="test-tiny", weights="seeded")
    out = save_bundle(tmp_path / name, task_id=3, modalities=["wsi", "rna", "clinical"], members=specs,
                      calibration=calibration.to_dict(), output_kind="months", recipe=recipe.to_dict(),
                      genes=GENES, clinical_schema=schema.to_dict(), meta={"seed": 0})
    return out, networks, specs, clinical_encoder, rna_normaliser, calibration, schema


def _inputs(schema, seed=1, wsi=True, rna=True):
    rng = np.random.default_rng(seed)
    record = parse_clinical(_clinical(rng), schema)
    rna_raw = {g: float(abs(rng.normal()) * 10) for g in GENES}
    bag = Bag(features=rng.normal(size=(5, WSI_DIM)).astype(np.float32), coords=np.zeros((5, 3), dtype=np.int64))
    return ModalityInputs(wsi=bag if wsi else None, clinical=record, rna=parse_rna(rna_raw, GENES) if rna else None)


def test_saved_bundle_loads_and_predicts_like_its_networks(tmp_path):
    path, networks, specs, clinical_encoder, rna_normaliser, calibration, schema = _build(tmp_path)
    assert sorted(p.name for p in path.iterdir()) == ["bundle.json", "weights.safetensors"]
    bundle = load_bundle(path)
    assert bundle.task_id == 3 and bundle.modalities == ["wsi", "clinical", "rna"]
    assert bundle.genes == GENES and bundle.recipe.encoder == "test-tiny" and bundle.mri_kind is None
    assert [f.key for f in bundle.clinical_schema.features] == [f.key for f in schema.features]

    inputs = _inputs(schema)
    prediction = bundle.predict(inputs)
    assert isinstance(prediction, BundlePrediction)
    assert prediction.used == ["wsi", "clinical", "rna"]
    # The same numbers by hand: each network on the encoded inputs, standardised, averaged, calibrated.
    vectors = {"clinical": clinical_encoder.transform([inputs.clinical])[0],
               "rna": rna_normaliser.transform(inputs.rna.values[None])[0]}
    expected = []
    for net, spec in zip(networks, specs):
        with torch.no_grad():
            raw = float(net(make_batch(spec.input_dims, inputs.wsi.features, vectors))["risk"][0])
        expected.append((raw - spec.risk_shift) / spec.risk_scale)
    assert prediction.risk == pytest.approx(np.mean(expected), abs=1e-6)
    assert prediction.value == pytest.approx(float(calibration.predict(np.array([np.mean(expected)]))[0]), rel=1e-9)
    assert np.isfinite(prediction.value) and prediction.value >= 0


def test_missing_modalities_degrade_instead_of_failing(tmp_path):
    path, *_, schema = _build(tmp_path)
    bundle = load_bundle(path)
    full = bundle.predict(_inputs(schema))
    no_wsi = bundle.predict(_inputs(schema, wsi=False))
    clinical_only = bundle.predict(ModalityInputs(clinical=_inputs(schema).clinical))
    assert no_wsi.used == ["clinical", "rna"] and clinical_only.used == ["clinical"]
    assert np.isfinite([no_wsi.value, clinical_only.value]).all()
    assert len({full.risk, no_wsi.risk, clinical_only.risk}) == 3  # the masks reach the networks
    empty_bag = ModalityInputs(wsi=Bag(np.zeros((0, WSI_DIM), np.float32), np.zeros((0, 3), np.int64)),
                               clinical=_inputs(schema).clinical)
    assert bundle.predict(empty_bag).used == ["clinical"]
    with pytest.raises(NoUsableModality):
        bundle.predict(ModalityInputs())


def test_bundle_bytes_are_deterministic(tmp_path):
    first = _build(tmp_path, "one")[0]
    second = _build(tmp_path, "two")[0]
    for name in ("bundle.json", "weights.safetensors"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    doc = json.loads((first / "bundle.json").read_text())
    assert doc["format_version"] == 1 and [m["prefix"] for m in doc["members"]] == ["m0.", "m1."]
    assert doc["clinical_schema"]["features"]["BRS"]["type"] == "categorical"


def test_absent_and_broken_bundles(tmp_path):
    assert load_bundle(tmp_path / "nothing-here") is None
    path = _build(tmp_path)[0]
    weights = path / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum"):
        load_bundle(path)
    (path / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError):
        load_bundle(path)


def test_wrong_widths_are_reported(tmp_path):
    path, *_, schema = _build(tmp_path)
    bundle = load_bundle(path)
    bad = _inputs(schema)
    bad.wsi = Bag(np.ones((3, WSI_DIM + 1), np.float32), np.zeros((3, 3), np.int64))
    with pytest.raises(BundleError, match="WSI bag"):
        bundle.predict(bad)
