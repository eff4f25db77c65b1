"""InterSHAP core: exactness on games with known answers, axioms, brute force, maskers and estimators."""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest

from chimera_surv.audit import ESTIMATORS, intershap, shapley_from_values
from chimera_surv.audit.intershap import coalition_masks, coalition_values
from chimera_surv.audit.maskers import MASKERS, build_masker

MASKER_CONFIGS = ["mean", "zero", {"name": "shuffle", "k": 7, "seed": 3}, "absent"]


def _embeddings(rng: np.random.Generator, n: int, dims: dict[str, int]) -> dict[str, np.ndarray]:
    return {m: rng.normal(size=(n, d)) for m, d in dims.items()}


def _symmetric(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Background with an exactly zero mean per feature (x and -x)."""
    return {m: np.concatenate([v, -v]) for m, v in x.items()}


def _product_grid(values: np.ndarray) -> dict[str, np.ndarray]:
    """Background where a and b are independent: every (a, b) pair, so mean(a*b) = mean(a)*mean(b) = 0."""
    a, b = np.meshgrid(values, values, indexing="ij")
    return {"a": a.reshape(-1, 1), "b": b.reshape(-1, 1)}


def _run(f, x, bg, masker, **kw):
    with_presence = masker == "absent"
    fn = (lambda e, p: f({m: np.where(p[m][:, None], e[m], 0.0) for m in e})) if with_presence else f
    return intershap(fn, x, bg, masker, with_presence=with_presence, **kw)


def test_coalition_layout() -> None:
    masks = coalition_masks(3)
    assert masks.shape == (8, 3)
    assert not masks[0].any() and masks[-1].all()
    assert masks[0b101].tolist() == [True, False, True]


@pytest.mark.parametrize("masker", MASKER_CONFIGS, ids=str)
def test_additive_model_has_zero_interaction(masker) -> None:
    rng = np.random.default_rng(0)
    x = _embeddings(rng, 40, {"a": 5, "b": 3, "c": 4})
    bg = _embeddings(rng, 30, {"a": 5, "b": 3, "c": 4})

    def additive(e):  # nonlinear inside each modality, additive across modalities
        return np.tanh(e["a"] @ np.arange(5.0)) + (e["b"] ** 2).sum(1) + np.sin(e["c"][:, 0]) * 3

    res = _run(additive, x, bg, masker)
    off = res.matrix[:, ~np.eye(3, dtype=bool)]
    assert np.abs(off).max() < 1e-12
    for name, est in res.estimates().items():
        assert est.interaction_pct < 1e-9, name
    # the model is not constant: main effects carry everything
    assert np.abs(np.diagonal(res.matrix, axis1=1, axis2=2)).mean() > 0.1


@pytest.mark.parametrize("masker", ["mean", "zero", "shuffle"])
def test_pure_product_is_full_interaction_but_eq5_says_one_third(masker) -> None:
    rng = np.random.default_rng(1)
    x = {"a": rng.normal(size=(25, 1)) + 0.3, "b": rng.normal(size=(25, 1)) - 0.2}
    if masker == "shuffle":
        bg = _product_grid(np.array([-2.0, -0.5, 0.5, 2.0]))
        masker = {"name": "shuffle", "k": 1000}  # k >= background size: all 16 rows
    else:
        bg = _symmetric({"a": rng.normal(size=(20, 1)), "b": rng.normal(size=(20, 1))})
    res = intershap(lambda e: e["a"][:, 0] * e["b"][:, 0], x, bg, masker)
    est = res.estimates()
    for name in ["orig_mean_abs", "orig_abs_of_mean", "orig_local_mean", "pair_once_local_mean",
                 "self_ratio_of_means"]:
        assert est[name].interaction_pct == pytest.approx(100.0, abs=1e-9), name
    for name in ["e5_patient_mean", "e5_ratio_of_means"]:
        assert est[name].interaction_pct == pytest.approx(100.0 / 3.0, abs=1e-9), name
    # phi_W = phi_R = phi_int = ab/2 per patient (seed eq. 2-4), main effects 0
    ab = x["a"][:, 0] * x["b"][:, 0]
    np.testing.assert_allclose(res.shapley, np.stack([ab / 2, ab / 2], 1), atol=1e-12)
    np.testing.assert_allclose(res.matrix[:, 0, 1], ab / 2, atol=1e-12)


@pytest.mark.parametrize("masker", MASKER_CONFIGS, ids=str)
def test_efficiency_and_symmetry(masker) -> None:
    rng = np.random.default_rng(2)
    dims = {"a": 4, "b": 2, "c": 3}
    x, bg = _embeddings(rng, 30, dims), _embeddings(rng, 25, dims)
    w = {m: rng.normal(size=d) for m, d in dims.items()}

    def f(e):
        s = {m: e[m] @ w[m] for m in e}
        return np.tanh(s["a"] * s["b"]) + s["c"] * np.maximum(s["a"], 0) + 0.3 * s["a"] * s["b"] * s["c"]

    res = _run(f, x, bg, masker)
    v = res.coalition_values
    np.testing.assert_allclose(res.matrix.sum((1, 2)), v[:, -1] - v[:, 0], atol=1e-12)
    np.testing.assert_allclose(res.shapley.sum(1), v[:, -1] - v[:, 0], atol=1e-12)
    np.testing.assert_array_equal(res.matrix, np.transpose(res.matrix, (0, 2, 1)))
    np.testing.assert_allclose(res.matrix.sum(2), res.shapley, atol=1e-12)
    # v(N) is the model on the full input, for every masker
    np.testing.assert_allclose(v[:, -1], f(x), atol=1e-12)
    assert 0.0 < res.estimate("orig_mean_abs").interaction_pct < 100.0


def test_symmetric_players_get_equal_values_and_order_is_equivariant() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(size=(20, 2))
    x = {"a": z, "b": z.copy(), "c": rng.normal(size=(20, 2))}
    bg = {"a": np.ones((1, 2)), "b": np.ones((1, 2)), "c": np.zeros((1, 2))}

    def f(e):
        return e["a"][:, 0] * e["b"][:, 0] + np.exp(e["a"][:, 1] + e["b"][:, 1]) * e["c"][:, 0]

    res = intershap(f, x, bg, "mean")
    np.testing.assert_allclose(res.shapley[:, 0], res.shapley[:, 1], atol=1e-12)
    np.testing.assert_allclose(res.matrix[:, 0, 2], res.matrix[:, 1, 2], atol=1e-12)
    perm = ["c", "a", "b"]
    res2 = intershap(f, x, bg, "mean", modalities=perm)
    idx = [0, 1, 2]
    order = [idx[["a", "b", "c"].index(m)] for m in perm]
    np.testing.assert_allclose(res2.matrix, res.matrix[:, order][:, :, order], atol=1e-12)


def _brute_force(values: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Shapley by averaging over all orderings; pair interactions from Harsanyi dividends (SII/2)."""
    masks = coalition_masks(m)
    index = {tuple(np.flatnonzero(row)): c for c, row in enumerate(masks)}
    shap = np.zeros((values.shape[0], m))
    orders = list(permutations(range(m)))
    for order in orders:
        before: list[int] = []
        for i in order:
            prev = index[tuple(sorted(before))]
            before.append(i)
            shap[:, i] += values[:, index[tuple(sorted(before))]] - values[:, prev]
    shap /= len(orders)
    # Harsanyi dividends d(T) = sum_{S ⊆ T} (-1)^{|T|-|S|} v(S)
    div = np.zeros_like(values)
    for t, tm in enumerate(masks):
        for s, sm in enumerate(masks):
            if np.all(sm <= tm):
                div[:, t] += (-1) ** int(tm.sum() - sm.sum()) * values[:, s]
    inter = np.zeros((values.shape[0], m, m))
    for i in range(m):
        for j in range(m):
            if i != j:
                for t, tm in enumerate(masks):
                    if tm[i] and tm[j]:
                        inter[:, i, j] += div[:, t] / (tm.sum() - 1) / 2.0
    # Shapley also equals sum_{T ∋ i} d(T)/|T| (checks the dividends themselves)
    shap_div = np.stack([sum(div[:, t] / tm.sum() for t, tm in enumerate(masks) if tm[i]) for i in range(m)], 1)
    np.testing.assert_allclose(shap, shap_div, atol=1e-12)
    for i in range(m):
        inter[:, i, i] = shap[:, i] - inter[:, i].sum(1)
    return shap, inter


@pytest.mark.parametrize("m", [2, 3, 4])
def test_closed_form_matches_brute_force(m: int) -> None:
    values = np.random.default_rng(m).normal(size=(6, 2**m))
    res = shapley_from_values(values, [f"m{i}" for i in range(m)], masker={"name": "none"})
    shap, inter = _brute_force(values, m)
    np.testing.assert_allclose(res.shapley, shap, atol=1e-12)
    np.testing.assert_allclose(res.matrix, inter, atol=1e-12)


def test_m3_closed_form_game() -> None:
    """f = 2a + 3ab + 6abc with zero masking: dividends are the monomials, so the answer is known."""
    rng = np.random.default_rng(4)
    x = {k: rng.normal(size=(15, 1)) for k in "abc"}
    res = intershap(lambda e: 2 * e["a"][:, 0] + 3 * e["a"][:, 0] * e["b"][:, 0]
                    + 6 * e["a"][:, 0] * e["b"][:, 0] * e["c"][:, 0], x, x, "zero")
    a, b, c = (x[k][:, 0] for k in "abc")
    np.testing.assert_allclose(res.shapley[:, 0], 2 * a + 1.5 * a * b + 2 * a * b * c, atol=1e-12)
    np.testing.assert_allclose(res.shapley[:, 2], 2 * a * b * c, atol=1e-12)
    # phi_ab = (3ab/1 + 6abc/2) / 2 ; phi_bc = (6abc/2) / 2
    np.testing.assert_allclose(res.matrix[:, 0, 1], 1.5 * a * b + 1.5 * a * b * c, atol=1e-12)
    np.testing.assert_allclose(res.matrix[:, 1, 2], 1.5 * a * b * c, atol=1e-12)


def test_three_way_dividend_shows_pure_abc_synergy() -> None:
    """Pure a·b·c under zero-mean masking: every pairwise estimator sees pairs (primary: 75%, main effects
    −abc/6 each), while the Harsanyi dividends put 100% on the three-way coalition."""
    rng = np.random.default_rng(6)
    x = {k: rng.normal(size=(40, 1)) for k in "abc"}
    bg = {k: np.array([[-1.0], [1.0]]) for k in "abc"}  # mean masker baseline = 0 exactly
    res = intershap(lambda e: e["a"][:, 0] * e["b"][:, 0] * e["c"][:, 0], x, bg, "mean")
    abc = x["a"][:, 0] * x["b"][:, 0] * x["c"][:, 0]
    s = res.summary(per_patient=True)
    assert s["estimators"]["orig_mean_abs"]["interaction_pct"] == pytest.approx(75.0)
    np.testing.assert_allclose(res.matrix[:, 0, 0], -abc / 6, atol=1e-12)
    np.testing.assert_allclose(res.dividends[:, -1], abc, atol=1e-12)
    h = s["harsanyi"]
    assert h["all_m"]["coalition"] == "a*b*c" and h["all_m"]["pct"] == pytest.approx(100.0)
    assert h["by_order_pct"] == pytest.approx({"1": 0.0, "2": 0.0, "3": 100.0})
    np.testing.assert_allclose(s["per_patient"]["all_m_dividend"], abc, atol=1e-12)
    # a pairwise game has no three-way term; an additive one only first-order dividends
    pair = intershap(lambda e: e["a"][:, 0] * e["b"][:, 0] + e["c"][:, 0], x, bg, "mean").summary()["harsanyi"]
    assert pair["all_m"]["pct"] == pytest.approx(0.0, abs=1e-9) and pair["by_order_pct"]["2"] > 0


@pytest.mark.parametrize("m", [2, 3, 4])
def test_dividends_sum_to_the_game_and_match_the_pairwise_terms(m: int) -> None:
    values = np.random.default_rng(10 + m).normal(size=(5, 2**m))
    res = shapley_from_values(values, [f"m{i}" for i in range(m)], masker={"name": "none"})
    d = res.dividends
    np.testing.assert_allclose(d[:, 0], values[:, 0], atol=1e-12)  # d(∅) = v(∅)
    np.testing.assert_allclose(d[:, 1:].sum(1), values[:, -1] - values[:, 0], atol=1e-12)
    masks = coalition_masks(m)
    # Shapley value = each dividend shared equally among its members (Harsanyi)
    shares = (d[:, 1:, None] * masks[None, 1:, :] / masks[1:].sum(1)[None, :, None]).sum(1)
    np.testing.assert_allclose(res.shapley, shares, atol=1e-12)
    if m == 2:
        np.testing.assert_allclose(d[:, -1], 2 * res.matrix[:, 0, 1], atol=1e-12)


def test_two_modalities_match_seed_equations_2_to_4() -> None:
    v = np.random.default_rng(5).normal(size=(9, 4))  # columns: ∅, {W}, {R}, {W,R}
    res = shapley_from_values(v, ["wsi", "rna"], masker={"name": "none"})
    e, w, r, wr = v.T
    np.testing.assert_allclose(res.shapley[:, 0], 0.5 * (w - e) + 0.5 * (wr - r), atol=1e-14)
    np.testing.assert_allclose(res.shapley[:, 1], 0.5 * (r - e) + 0.5 * (wr - w), atol=1e-14)
    np.testing.assert_allclose(res.matrix[:, 0, 1], 0.5 * (wr - w - r + e), atol=1e-14)


def test_shuffle_masks_jointly_and_subsamples_deterministically() -> None:
    rng = np.random.default_rng(6)
    x, bg = _embeddings(rng, 5, {"a": 2, "b": 2, "c": 1}), _embeddings(rng, 40, {"a": 2, "b": 2, "c": 1})

    def f(e):
        return e["a"][:, 0] * e["b"][:, 1] + e["c"][:, 0] * e["a"][:, 1]

    masker = build_masker({"name": "shuffle", "k": 10, "seed": 11})
    base = masker.fit(bg)
    assert base.size == 10
    np.testing.assert_array_equal(base.embeddings["a"], masker.fit(bg).embeddings["a"])
    rows = [int(np.flatnonzero((bg["a"] == r).all(1))[0]) for r in base.embeddings["a"]]
    np.testing.assert_array_equal(base.embeddings["b"], bg["b"][rows])  # same patients for every modality
    res = intershap(f, x, bg, masker)
    np.testing.assert_allclose(res.base_value, f(base.embeddings).mean(), atol=1e-12)
    # v({a}) = mean_k f(a_i, b_k, c_k) with b, c from the same background patient k
    only_a = {"a": np.repeat(x["a"][:1], 10, 0), "b": base.embeddings["b"], "c": base.embeddings["c"]}
    assert res.coalition_values[0, 1] == pytest.approx(f(only_a).mean(), abs=1e-12)


def test_batching_does_not_change_values_and_time_is_recorded() -> None:
    rng = np.random.default_rng(7)
    x, bg = _embeddings(rng, 33, {"a": 3, "b": 2}), _embeddings(rng, 12, {"a": 3, "b": 2})
    calls: list[int] = []

    def f(e):
        calls.append(len(e["a"]))
        return np.tanh(e["a"].sum(1) * e["b"].sum(1))

    big = intershap(f, x, bg, {"name": "shuffle", "k": 5})
    assert calls == [4 * 33 * 5]  # one forward: 2^M x N x K rows
    calls.clear()
    small = intershap(f, x, bg, {"name": "shuffle", "k": 5}, max_rows=50)
    assert max(calls) <= 50 and len(calls) == int(np.ceil(33 / 2))
    np.testing.assert_array_equal(big.coalition_values, small.coalition_values)
    assert big.timing["forward_calls"] == 1 and small.timing["forward_calls"] == len(calls)
    assert big.timing["rows"] == 4 * 33 * 5 and big.timing["seconds"] >= 0.0


def test_constant_model_gives_zero_not_nan() -> None:
    rng = np.random.default_rng(8)
    x = _embeddings(rng, 10, {"a": 2, "b": 2})
    res = intershap(lambda e: np.full(len(e["a"]), 1.5), x, x, "mean")
    for name, est in res.estimates().items():
        assert est.interaction_pct == 0.0, name
        assert all(np.isfinite(v) for v in est.shares_pct.values())
    assert res.estimate("e5_patient_mean").n_null == 10


def test_non_finite_model_output_is_refused() -> None:
    x = {"a": np.ones((3, 1)), "b": np.ones((3, 1))}
    with pytest.raises(ValueError, match="non-finite"), np.errstate(divide="ignore"):
        intershap(lambda e: np.log(e["a"][:, 0] - 1.0), x, x, "mean")


def test_mean_masker_ignores_absent_background_rows() -> None:
    bg = {"a": np.array([[1.0], [3.0], [100.0]])}
    base = MASKERS.build("mean").fit(bg, {"a": np.array([True, True, False])})
    assert base.embeddings["a"][0, 0] == pytest.approx(2.0)
    none_present = MASKERS.build("mean").fit(bg, {"a": np.zeros(3, dtype=bool)})
    assert none_present.embeddings["a"][0, 0] == 0.0


def test_every_estimator_is_named_and_registered() -> None:
    assert set(ESTIMATORS.names()) >= {"orig_mean_abs", "e5_patient_mean", "e5_ratio_of_means",
                                        "self_ratio_of_means", "orig_abs_of_mean", "orig_local_mean",
                                        "pair_once_local_mean"}
    assert set(MASKERS.names()) == {"mean", "zero", "shuffle", "absent"}
    x = {"a": np.ones((2, 1)), "b": np.ones((2, 1))}
    v = coalition_values(lambda e: e["a"][:, 0], x, build_masker("zero").fit(x))[0]
    assert v.shape == (2, 4)
