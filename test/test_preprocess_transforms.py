"""Fitted transforms: what they compute, that they never emit NaN, and that a JSON round trip is exact."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chimera_surv.preprocess import ClinicalEncoder, RNANormaliser, Standardiser
from chimera_surv.readers.clinical import ClinicalRecord, load_schema, parse_clinical


def _round_trip(obj):
    return type(obj).from_dict(json.loads(json.dumps(obj.to_dict())))


def _bladder_records(n: int, seed: int = 0) -> list[ClinicalRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        out.append(
            parse_clinical(
                {
                    "age": float(rng.normal(69, 9)),
                    "sex": str(rng.choice(["Male", "Female", "-1"])),
                    "smoking": str(rng.choice(["No", "Yes", "-1"])),
                    "tumor": "Primary",
                    "stage": str(rng.choice(["TaHG", "T1HG"])),
                    "substage": str(rng.choice(["T1e", "T1m", "-1"])),
                    "grade": str(rng.choice(["G2", "G3"])),
                    "reTUR": str(rng.choice(["No", "Yes"])),
                    "LVI": str(rng.choice(["No", "Yes", "-1"])),
                    "variant": str(rng.choice(["UCC", "UCC + Variant"])),
                    "EORTC": str(rng.choice(["High risk", "Highest risk"])),
                    "no_instillations": int(rng.choice([-1, 6, 12, 18, 27])),
                    "BRS": str(rng.choice(["BRS1", "BRS2", "BRS3"])),
                },
                3,
            )
        )
    return out


def test_clinical_encoder_columns_and_values():
    train = [
        parse_clinical({"age": a, "sex": s, "no_instillations": n}, 3)
        for a, s, n in [(60, "Male", 10), (70, "Female", -1), (80, "Male", 30)]
    ]
    enc = ClinicalEncoder().fit(train, 3)
    names = enc.feature_names()
    assert names[:2] == ["age", "age__missing"]
    assert ["sex=Male", "sex=Female", "sex=__unknown__"] == [n for n in names if n.startswith("sex")]
    # categories never seen in training get no column of their own: tumor only has the unknown column
    assert [n for n in names if n.startswith("tumor")] == ["tumor=__unknown__"]
    x = enc.transform(train)
    assert x.shape == (3, enc.dim) and x.dtype == np.float32
    col = {n: i for i, n in enumerate(names)}
    np.testing.assert_allclose(
        x[:, col["age"]], (np.array([60, 70, 80]) - 70) / np.std([60, 70, 80]), rtol=1e-6
    )
    # no_instillations: median 20 imputed for the missing one, then standardised with mean 20
    np.testing.assert_allclose(x[:, col["no_instillations__missing"]], [0, 1, 0])
    assert x[1, col["no_instillations"]] == pytest.approx(0.0)
    test = enc.transform([parse_clinical({"sex": "Female", "tumor": "Recurrence"}, 3)])[0]
    assert test[col["sex=Female"]] == 1 and test[col["sex=__unknown__"]] == 0
    assert test[col["tumor=__unknown__"]] == 1 and test[col["age__missing"]] == 1


def test_clinical_encoder_binary_and_ordinal_task1():
    raws = [
        {"ISUP": 1, "capsular_penetration": "1"},
        {"ISUP": 5, "capsular_penetration": "0"},
        {"ISUP": "x", "capsular_penetration": "x"},
    ]
    recs = [parse_clinical(r, 1) for r in raws]
    enc = ClinicalEncoder().fit(recs, 1)
    col = {n: i for i, n in enumerate(enc.feature_names())}
    x = enc.transform(recs)
    assert x[2, col["capsular_penetration"]] == pytest.approx(0.5)  # training rate imputed
    assert x[2, col["capsular_penetration__missing"]] == 1
    assert x[0, col["ISUP"]] == pytest.approx(-1.0) and x[1, col["ISUP"]] == pytest.approx(1.0)
    assert x[2, col["ISUP"]] == pytest.approx(0.0)  # median 3 == mean 3


def test_clinical_encoder_never_nan_and_round_trips():
    train, test = _bladder_records(40, 0), _bladder_records(10, 1)
    test += [
        parse_clinical(None, 3),
        ClinicalRecord({"age": float("inf"), "sex": 3, "stage": None}),
        ClinicalRecord({"age": 1e308}),
    ]
    enc = ClinicalEncoder().fit(train, load_schema(3))
    out = enc.transform(test)
    assert np.isfinite(out).all() and out.shape == (13, enc.dim)
    assert np.abs(out).max() <= enc.clip
    again = _round_trip(enc)
    np.testing.assert_array_equal(again.transform(test), out)
    assert again.feature_names() == enc.feature_names()
    np.testing.assert_array_equal(enc.transform(test[0]), out[0])  # a single record gives one row


def test_clinical_encoder_is_deterministic_and_dimension_depends_only_on_training():
    a = ClinicalEncoder().fit(_bladder_records(30, 3), 3)
    b = ClinicalEncoder().fit(list(reversed(_bladder_records(30, 3))), 3)
    assert a.to_dict() == b.to_dict()


def _rna_matrix(n=30, g=50, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.lognormal(mean=2.0, sigma=rng.uniform(0.1, 2.0, g), size=(n, g))
    x[rng.random((n, g)) < 0.05] = np.nan
    return x


def test_rna_normaliser_zscore_without_selection():
    x = _rna_matrix()
    norm = RNANormaliser(log1p=True).fit(x)
    z = norm.transform(x)
    logged = np.log1p(x)
    expected = (
        np.where(np.isnan(logged), np.nanmean(logged, 0), logged) - np.nanmean(logged, 0)
    ) / np.nanstd(logged, 0)
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-5)
    assert np.isfinite(z).all() and np.allclose(z.mean(0), 0, atol=1e-5)


def test_rna_without_zscore_only_imputes():
    x = _rna_matrix(10, 6)
    out = RNANormaliser(log1p=False, zscore=False, clip=None).fit(x).transform(x)
    expected = np.where(np.isnan(x), np.nanmean(x, 0), x)
    np.testing.assert_allclose(out, expected.astype(np.float32), rtol=1e-6)


def test_rna_top_var_keeps_the_most_variable_genes():
    x = _rna_matrix()
    genes = [f"G{i}" for i in range(x.shape[1])]
    norm = RNANormaliser(top_var=10).fit(x, genes)
    variance = np.nanvar(np.log1p(x), axis=0)
    assert set(norm.selected.tolist()) == set(np.argsort(-variance)[:10].tolist())
    assert norm.feature_names() == [genes[i] for i in sorted(norm.selected)]
    assert norm.transform(x).shape == (30, 10)


def test_rna_pca_whitened_uncorrelated_deterministic_and_round_trips():
    x = _rna_matrix(40, 60)
    norm = RNANormaliser(top_var=30, pca=5, whiten=True, clip=None).fit(x)
    pcs = norm.transform(x)
    assert pcs.shape == (40, 5) and norm.feature_names()[0] == "rna_pc1"
    np.testing.assert_allclose(pcs.std(0, ddof=1), 1.0, rtol=1e-4)  # whitened training scores
    np.testing.assert_allclose(np.corrcoef(pcs.T), np.eye(5), atol=1e-4)  # uncorrelated
    refit = RNANormaliser(top_var=30, pca=5, whiten=True, clip=None).fit(x)
    assert refit.to_dict() == norm.to_dict()  # sign-fixed SVD: same data, same components
    again = _round_trip(norm)
    y = _rna_matrix(5, 60, seed=9)
    np.testing.assert_array_equal(again.transform(y), norm.transform(y))
    np.testing.assert_array_equal(again.transform(y[0]), norm.transform(y)[0])


def test_rna_sklearn_style_aliases():
    x = _rna_matrix()
    a = RNANormaliser(top_k=10, n_components=3).fit(x)
    b = RNANormaliser(top_var=10, pca=3).fit(x)
    assert a.to_dict() == b.to_dict() and a.dim == 3


def test_rna_pca_components_capped_by_sample_count():
    norm = RNANormaliser(pca=50).fit(_rna_matrix(8, 20))
    assert norm.dim == 7


def test_rna_all_missing_or_hostile_input_is_finite():
    x = _rna_matrix()
    norm = RNANormaliser(top_var=20, pca=4).fit(x)
    hostile = np.array([np.full(50, np.nan), np.full(50, np.inf), np.full(50, -1e30), np.full(50, 1e300)])
    out = norm.transform(hostile)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[0], 0.0, atol=1e-6)  # all-NaN → the training mean → PC scores ≈ 0
    with pytest.raises(ValueError):
        norm.transform(np.zeros(49))


def test_rna_gene_never_observed_and_constant_gene():
    x = _rna_matrix(10, 5)
    x[:, 0] = np.nan
    x[:, 1] = 3.0
    z = RNANormaliser().fit(x).transform(x)
    assert np.isfinite(z).all() and (z[:, 0] == 0).all() and (z[:, 1] == 0).all()


def test_standardiser_round_trip_and_nan():
    rng = np.random.default_rng(0)
    x = rng.normal(5, 2, (20, 4))
    x[3, 2] = np.nan
    std = Standardiser().fit(x, ["vol", "adc", "t2", "hbv"])
    z = std.transform(x)
    assert np.isfinite(z).all() and z[3, 2] == 0.0
    np.testing.assert_allclose(z[:, [0, 1, 3]].mean(0), 0, atol=1e-6)
    again = _round_trip(std)
    np.testing.assert_array_equal(again.transform(x), z)
    assert again.feature_names() == ["vol", "adc", "t2", "hbv"]
    assert std.transform(np.array([np.nan, np.inf, 1e300, 5])).shape == (4,)
    assert np.isfinite(std.transform(np.array([np.nan, np.inf, 1e300, 5]))).all()


def test_unfitted_and_wrong_kind():
    with pytest.raises(RuntimeError):
        Standardiser().transform(np.zeros(3))
    with pytest.raises(ValueError):
        RNANormaliser.from_dict(Standardiser().fit(np.ones((2, 2))).to_dict())
