"""Leave-one-patch-out occlusion of classical members (chimera_surv/explain.py): the closed-form, vectorised path
equals a loop that really removes each patch and predicts again through the bundle (1e-6), for a linear and a
tree member, and the drawing keeps the sign of the change."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from chimera_surv import explain
from chimera_surv.bundle import Bundle, ClassicalMember, ModalityInputs
from chimera_surv.classical import (
    ClassicalModel,
    DesignBlock,
    LinearPredictor,
    Part,
    TreeEnsemblePredictor,
    pool_bag,
)
from chimera_surv.classical.design import LeaveOneOut

RNG = np.random.default_rng(3)
D = 6
POOLS = ["mean", "max", "std"]


class Identity:
    """A fitted-preprocessing stand-in: the MRI vector is already encoded."""

    def transform(self, matrix: np.ndarray) -> np.ndarray:
        return matrix


def _bag(n: int) -> np.ndarray:
    bag = RNG.normal(size=(n, D)).astype(np.float32)
    bag[RNG.integers(0, n, size=max(1, n // 8))] += 3.0  # a few outlying patches move the max and the std
    return bag


@pytest.fixture(scope="module")
def members() -> dict[str, ClassicalMember]:
    """A linear and a random-forest member on (pooled slide PCA + MRI), and an MRI-only member."""
    from sklearn.ensemble import RandomForestRegressor

    bags = [_bag(int(RNG.integers(4, 30))) for _ in range(80)]
    pooled = np.stack([pool_bag(b, POOLS) for b in bags])
    mri = RNG.normal(size=(80, 3))
    wsi_block = DesignBlock.fit("wsi", pooled, POOLS, n_components=5)
    mri_block = DesignBlock.fit("mri", mri)
    X = np.concatenate([wsi_block.transform(pooled), mri_block.transform(mri)], axis=1)
    y = X[:, 0] - 0.7 * X[:, 1] + 0.5 * X[:, 2] ** 2 + 0.3 * X[:, 5] + RNG.normal(scale=0.2, size=80)
    forest = RandomForestRegressor(n_estimators=12, max_depth=5, random_state=0).fit(X, y)
    trees = TreeEnsemblePredictor.from_sklearn_trees([e.tree_ for e in forest.estimators_], X.shape[1],
                                                     [e.tree_.value[:, 0, 0] for e in forest.estimators_],
                                                     reduce="mean")
    linear = LinearPredictor(RNG.normal(size=X.shape[1]), 0.3)

    def member(name: str, parts: list[Part], scale: float) -> ClassicalMember:
        model = ClassicalModel(name, parts)
        return ClassicalMember(name, model, {"wsi": D, "mri": 3}, {"mri": Identity()}, 0.2, scale)

    return {"linear": member("linear", [Part("ridge", [wsi_block, mri_block], linear)], 1.7),
            "trees": member("trees", [Part("rsf", [wsi_block, mri_block], trees, 0.8, 0.1, 0.5)], 0.6),
            "mri_only": member("mri_only", [Part("ridge", [mri_block], LinearPredictor(np.ones(3)))], 1.0)}


def _bundle(members: list[ClassicalMember]) -> Bundle:
    calibration = SimpleNamespace(predict=lambda risk: np.asarray(risk))
    return Bundle(None, 0, ["wsi", "mri"], None, None, [], None, members, calibration, "months", {})


def _inputs(bag: np.ndarray, mri: np.ndarray) -> ModalityInputs:
    coords = np.stack([np.zeros(len(bag)), np.arange(len(bag)) * 32, np.zeros(len(bag))], 1).astype(np.int64)
    return ModalityInputs(wsi=SimpleNamespace(features=bag, coords=coords), mri=mri)


@pytest.mark.parametrize("kind", ["linear", "trees"])
def test_fast_occlusion_equals_removing_each_patch_and_predicting(members, kind, monkeypatch):
    monkeypatch.setattr(explain, "OCCLUSION_CHUNK", 5)  # several chunks, the last one short
    member, bag, mri = members[kind], _bag(14), RNG.normal(size=3)
    vectors = {"mri": mri, "clinical": None, "rna": None}
    fast = explain.member_occlusion(member.model, vectors, bag) / member.risk_scale
    full = member.risk(vectors, bag)
    brute = np.array([member.risk(vectors, np.delete(bag, i, axis=0)) - full for i in range(len(bag))])
    np.testing.assert_allclose(fast, brute, atol=1e-6, rtol=0)
    assert np.count_nonzero(np.abs(brute) > 1e-9) >= 3  # the check is not vacuous: patches do move the risk


def test_ensemble_occlusion_is_the_change_of_the_bundle_risk(members):
    bundle = _bundle([members["linear"], members["trees"], members["mri_only"]])
    bag, mri = _bag(30), RNG.normal(size=3)
    fast = explain.ensemble_occlusion(bundle, _inputs(bag, mri))
    full = bundle.predict(_inputs(bag, mri)).risk
    brute = [bundle.predict(_inputs(np.delete(bag, i, axis=0), mri)).risk - full for i in range(len(bag))]
    np.testing.assert_allclose(fast, brute, atol=1e-6, rtol=0)
    # A one-patch bag left out is a missing slide: the bundle's degraded path, not an empty pool.
    one = bag[:1]
    missing = bundle.predict(ModalityInputs(mri=mri)).risk - bundle.predict(_inputs(one, mri)).risk
    np.testing.assert_allclose(explain.ensemble_occlusion(bundle, _inputs(one, mri)), [missing], atol=1e-9)
    assert explain.ensemble_occlusion(_bundle([members["mri_only"]]), _inputs(bag, mri)) is None
    assert explain.ensemble_occlusion(bundle, ModalityInputs(mri=mri)) is None
    assert explain.ensemble_attention(bundle, _inputs(bag, mri)) is None  # classical members have no attention


def test_leave_one_out_pools_with_ties_and_min():
    bag = RNG.normal(size=(9, 4))
    bag[2, 0] = bag[5, 0] = bag[:, 0].max() + 1.0  # two patches share the max of feature 0
    bag[:, 3] = 1.25  # a constant feature: std 0 whichever patch is left out
    pools = ("mean", "max", "std", "min")
    loo = LeaveOneOut(bag, pools)
    brute = np.stack([pool_bag(np.delete(bag, i, axis=0), pools) for i in range(len(bag))])
    np.testing.assert_allclose(np.concatenate([loo.rows(0, 4), loo.rows(4)]), brute, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="at least 2"):
        LeaveOneOut(bag[:1], pools)


def test_the_occlusion_map_shows_the_patch_contribution_with_its_sign():
    """member_occlusion gives risk(without) - risk(with); the map shows the opposite, how much the patch raises
    the risk, so red (positive) always means the patch raised it."""
    delta = np.array([-3.0, -1.0, 0.0, 0.5, 2.0])
    shown = explain.display_values(delta, "occlusion")
    np.testing.assert_array_equal(shown, -delta)
    stands, text = explain.map_summary(shown, "occlusion")
    assert stands and text.startswith("2 patches raise the risk and 2 lower it")
