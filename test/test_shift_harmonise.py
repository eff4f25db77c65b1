"""Single-patient-safe harmonisation: RNA within-sample transforms, bag augmentation, and the proof that nothing
is estimated from the test cohort (a patient's output alone equals its output among others)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chimera_surv.bundle import ModalityInputs, load_bundle
from chimera_surv.bundle_save import MemberSpec, save_bundle
from chimera_surv.features import Bag, FeatureRecipe
from chimera_surv.models import build_network
from chimera_surv.preprocess import RNANormaliser, within_sample
from chimera_surv.readers.clinical import load_schema, parse_clinical
from chimera_surv.readers.rna import parse_rna
from chimera_surv.survival.calibration import CALIBRATIONS
from train.augment import augment_bag, check_bag_augment

GENES = [f"G{i}" for i in range(40)]


def _profiles(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(4, 2, len(GENES))
    x = np.exp(base + 0.5 * rng.standard_normal((n, len(GENES))))
    x[rng.random(x.shape) < 0.05] = 0.0
    return np.round(x, 3)


@pytest.mark.parametrize("kind", ["rank", "quantile"])
def test_within_sample_removes_library_size_and_dynamic_range(kind):
    x = _profiles(6)
    distorted = 3.7 * x**0.6  # another library size and a compressed range: monotone per sample
    assert np.allclose(within_sample(x, kind), within_sample(distorted, kind))
    logged = RNANormaliser(within_sample="none").fit(x)
    assert not np.allclose(logged.transform(x), logged.transform(distorted), atol=1e-3)


def test_within_sample_standardise_removes_a_per_sample_affine_of_log_expression():
    logged = np.log1p(_profiles(6))
    rng = np.random.default_rng(4)
    distorted = rng.normal(0, 1, (6, 1)) + rng.uniform(0.5, 1.5, (6, 1)) * logged  # library size, range per sample
    out = within_sample(logged, "standardise")
    assert np.allclose(out, within_sample(distorted, "standardise"))
    assert np.allclose(out.mean(1), 0) and np.allclose(out.std(1), 1)
    offset = rng.normal(0, 0.4, logged.shape[1])  # a platform's gene-wise offset: the same for every patient ...
    moved = within_sample(logged + offset, "standardise") - out
    # ... stays nearly a constant per gene: it varies far less between patients than between genes
    assert moved.std(0).mean() < 0.15 * moved.mean(0).std()
    row = np.array([[1.0, np.nan, 3.0, 3.0]])
    assert np.isnan(within_sample(row, "standardise")[0, 1])
    assert np.allclose(within_sample(np.full((1, 4), 2.0), "standardise"), 0)  # a flat profile: centred, no NaN
    norm = RNANormaliser(within_sample="standardise").fit(np.expm1(logged))
    assert np.allclose(norm._log(np.expm1(logged)), out)  # log1p first, then the row standardisation


def test_within_sample_rank_values_and_missing_genes():
    row = np.array([[5.0, 0.0, np.nan, 2.0, 2.0]])
    out = within_sample(row, "rank")
    assert np.isnan(out[0, 2])
    assert out[0, [1, 3, 4, 0]].tolist() == pytest.approx([0.5 / 4, 2.0 / 4, 2.0 / 4, 3.5 / 4])
    with pytest.raises(ValueError, match="within_sample"):
        within_sample(row, "zscore")
    with pytest.raises(ValueError, match="within_sample"):
        RNANormaliser(within_sample="cohort")


def test_within_sample_normaliser_is_recorded_and_round_trips():
    x = _profiles(12)
    norm = RNANormaliser(within_sample="quantile", top_var=10).fit(x, GENES)
    data = norm.to_dict()
    assert data["within_sample"] == "quantile"
    again = RNANormaliser.from_dict(data)
    assert np.array_equal(again.transform(x), norm.transform(x))
    old = {k: v for k, v in RNANormaliser().fit(x).to_dict().items() if k != "within_sample"}
    assert RNANormaliser.from_dict(old).within_sample == "none"  # bundles written before the option


def test_rna_transform_of_one_patient_does_not_depend_on_the_others():
    x = _profiles(10, seed=1)
    for kind in ("none", "rank", "quantile", "standardise"):
        norm = RNANormaliser(within_sample=kind, top_var=15).fit(_profiles(30, seed=2))
        batch = norm.transform(x)
        for i in range(len(x)):
            assert np.array_equal(norm.transform(x[i]), batch[i])


def test_bag_augment_is_off_by_default_and_checked():
    assert check_bag_augment(None) == {} and check_bag_augment({"shift": 0.0}) == {}
    with pytest.raises(ValueError, match="unknown"):
        check_bag_augment({"jitter": 0.1})
    with pytest.raises(ValueError, match=">= 0"):
        check_bag_augment({"drop": 1.0})
    bag = np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)
    strengths = check_bag_augment({"shift": 0.5, "scale": 0.1, "noise": 0.1, "drop": 0.3})
    a = augment_bag(bag, np.random.default_rng(1), strengths)
    b = augment_bag(bag, np.random.default_rng(1), strengths)
    assert np.array_equal(a, b) and a.dtype == np.float32 and 1 <= len(a) <= len(bag)
    assert not np.allclose(a.mean(0), bag.mean(0), atol=0.05)  # the whole bag moved
    assert augment_bag(bag, np.random.default_rng(1), {}) is bag


def _bundle(tmp_path):
    """A tiny task-3 bundle whose RNA preprocessing is a within-sample transform (fitted on training only)."""
    rng = np.random.default_rng(0)
    schema = load_schema(3)
    clinical = [{"age": float(rng.integers(50, 85)), "stage": str(rng.choice(["TaHG", "T1HG"]))} for _ in range(20)]
    from chimera_surv.preprocess import ClinicalEncoder

    encoder = ClinicalEncoder().fit([parse_clinical(c, schema) for c in clinical], schema)
    rna = RNANormaliser(within_sample="quantile", top_var=12).fit(_profiles(20, seed=3))
    dims = {"wsi": 8, "clinical": encoder.dim, "rna": rna.dim}
    config = {"modalities": {"wsi": {"dim": 8, "encoder": {"name": "abmil_gated", "hidden": 8, "attn_hidden": 4,
                                                             "dropout": 0.0}},
                             "clinical": {"dim": dims["clinical"], "encoder": {"name": "mlp", "hidden": [6]}},
                             "rna": {"dim": dims["rna"], "encoder": {"name": "mlp", "hidden": [6]}}},
              "fusion": {"name": "concat_mlp", "hidden": [8], "dropout": 0.0}, "head": {"name": "cox"}}
    torch.manual_seed(0)
    net = build_network(config).eval()
    spec = MemberSpec(name="m0", network_config=config, input_dims=dims, state_dict=net.state_dict(),
                      preprocessing={"clinical": encoder.to_dict(), "rna": rna.to_dict()})
    calibration = CALIBRATIONS.build({"name": "km_quantile"}).fit(rng.normal(size=20), rng.uniform(5, 90, 20),
                                                                   rng.integers(0, 2, 20))
    return save_bundle(tmp_path / "b", task_id=3, modalities=["wsi", "rna", "clinical"], members=[spec],
                       calibration=calibration.to_dict(), output_kind="months",
                       recipe=FeatureRecipe(encoder="test-tiny", weights="seeded").to_dict(), genes=GENES,
                       clinical_schema=schema.to_dict(), meta={})


def test_a_patients_output_is_the_same_alone_or_among_others(tmp_path):
    """Nothing is estimated from the test cohort: predicting a cohort in any order, or one patient on a freshly
    loaded bundle, gives every patient the same value."""
    path = _bundle(tmp_path)
    schema = load_schema(3)
    rng = np.random.default_rng(5)
    profiles = 2.5 * _profiles(8, seed=9) ** 0.7  # a shifted platform: the test cohort is not like training
    cohort = [ModalityInputs(wsi=Bag(rng.normal(size=(6, 8)).astype(np.float32), np.zeros((6, 3), np.int64)),
                             clinical=parse_clinical({"age": 60.0 + i, "stage": "T1HG"}, schema),
                             rna=parse_rna(dict(zip(GENES, map(float, profiles[i]))), GENES)) for i in range(8)]
    bundle = load_bundle(path)
    forward = [bundle.predict(c).value for c in cohort]
    backward = [bundle.predict(c).value for c in reversed(cohort)][::-1]
    alone = [load_bundle(path).predict(c).value for c in cohort]
    assert forward == backward == alone
    assert len(set(forward)) > 1 and all(np.isfinite(forward))


def test_collate_augments_training_bags_only_when_asked():
    from train.data import CohortArrays, Encoded
    from train.fit import collate

    rng = np.random.default_rng(0)
    bags = [rng.normal(size=(10, 4)).astype(np.float32) for _ in range(3)]
    data = CohortArrays(case_ids=["a", "b", "c"], cohorts=["A"] * 3, time=np.array([5.0, 9.0, 20.0]),
                        event=np.array([1, 0, 1]), label=np.full(3, -1), modalities=["wsi"], bags=bags)
    enc = Encoded(vectors={}, present={"wsi": np.ones(3, bool)}, bags=bags, dims={"wsi": 4}, preprocessing={})
    plain, _ = collate(enc, data, [0, 1, 2], ["wsi"], np.random.default_rng(1), None)
    again, _ = collate(enc, data, [0, 1, 2], ["wsi"], np.random.default_rng(1), None, None, {})
    assert torch.equal(plain["wsi"], again["wsi"]) and torch.equal(plain["wsi"][0], torch.from_numpy(bags[0]))
    strengths = check_bag_augment({"shift": 0.5})
    moved, _ = collate(enc, data, [0, 1, 2], ["wsi"], np.random.default_rng(1), None, None, strengths)
    evaluated, _ = collate(enc, data, [0, 1, 2], ["wsi"], None, None, None, strengths)  # no rng: evaluation
    assert not torch.allclose(moved["wsi"], plain["wsi"]) and torch.equal(evaluated["wsi"], plain["wsi"])
