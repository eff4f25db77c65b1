"""The selection rules that must hold with ~100 patients and two hospitals: inner splits never fall to 2, the
equal-weight ensemble is z-scored on training parts only, switching away from it needs a corrected paired gain,
and the exported calibration sees the spread of the risk that ships."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from train.selection import AUTO_DEFAULTS, inner_splits
from train.selection.inner import standardiser
from train.selection.select import paired_gain


def _two_hospitals(n_a: int, n_b: int, event_rate: float = 0.5, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = n_a + n_b
    return SimpleNamespace(cohorts=["A"] * n_a + ["B"] * n_b, outcome=(rng.random(n) < event_rate).astype(int).tolist())


@pytest.mark.parametrize("seed", range(5))
def test_two_cohorts_of_60_and_40_never_leave_two_inner_splits(seed):
    data = _two_hospitals(60, 40, seed=seed)
    settings = dict(AUTO_DEFAULTS)
    train = list(range(100))
    splits, kinds = inner_splits(data, train, settings, seed)
    k, repeats = settings["inner_folds"], settings["inner_repeats"]
    assert len(splits) == k * repeats + 2 and len(splits) > 2
    assert kinds.count("loco") == 2 and kinds.count("kfold") == k * repeats
    for (tr, va), kind in zip(splits, kinds):
        assert sorted(tr + va) == train and not set(tr) & set(va)
        if kind == "loco":
            assert len({data.cohorts[i] for i in va}) == 1 and len({data.cohorts[i] for i in tr}) == 1
    # each k-fold repeat covers every patient exactly once
    for r in range(repeats):
        covered = sorted(i for _, va in splits[r * k:(r + 1) * k] for i in va)
        assert covered == train


def test_small_cohorts_are_strata_not_held_out_and_k_never_below_three():
    data = _two_hospitals(80, 20)  # B is below loco_min_size: no leave-one-cohort-out split
    splits, kinds = inner_splits(data, list(range(100)), dict(AUTO_DEFAULTS), 0)
    assert set(kinds) == {"kfold"}
    few = _two_hospitals(60, 40, event_rate=0.1)  # too few events in each hospital to be held out
    assert set(inner_splits(few, list(range(100)), dict(AUTO_DEFAULTS), 0)[1]) == {"kfold"}
    tiny = {**AUTO_DEFAULTS, "inner_folds": 2, "inner_repeats": 1, "loco": False}
    splits, kinds = inner_splits(data, list(range(100)), tiny, 0)
    assert len(splits) == 3  # a configured k of 2 is raised to 3


def test_standardiser_uses_the_training_part_only():
    train_risk = np.array([1.0, 2.0, 3.0, 4.0])
    shift, scale = standardiser(train_risk)
    assert shift == pytest.approx(2.5) and scale == pytest.approx(np.std(train_risk))
    assert standardiser(np.full(3, 7.0)) == (7.0, 1.0)  # a constant risk keeps SD 1 (no division by 0)


def test_switching_away_from_the_default_needs_a_corrected_paired_gain():
    inner = SimpleNamespace(splits=[(list(range(80)), list(range(80, 100)))] * 10)
    reference = [0.70, 0.62, 0.68, 0.66, 0.71, 0.64, 0.69, 0.65, 0.67, 0.70]
    steady = [v + 0.02 for v in reference]  # +0.02 on every split: no variance, clears any SE
    mean, se = paired_gain(steady, reference, inner)
    assert mean == pytest.approx(0.02) and se == pytest.approx(0.0, abs=1e-12)
    noisy = [v + d for v, d in zip(reference, [0.08, -0.06, 0.07, -0.05, 0.06, -0.07, 0.05, -0.04, 0.06, -0.05])]
    mean, se = paired_gain(noisy, reference, inner)
    naive = np.std(np.subtract(noisy, reference), ddof=1) / np.sqrt(10)
    assert se == pytest.approx(naive * np.sqrt(1 + 10 * 0.25))  # Nadeau-Bengio: sqrt(1/J + n_val/n_train)
    assert mean < se  # a noise-sized gain does not move the choice


def test_equal_ensemble_is_the_default_and_parts_are_z_scored_on_their_training_part(tmp_path):
    from test_auto import _ctx

    from train.selection import refit, select
    from train.selection.refit import predict_idx

    ctx = _ctx(tmp_path, "auto")
    train = list(range(0, len(ctx.data), 2)) + [1, 3, 5, 7]
    choice = select(ctx, "auto", train, seed=0)
    singles = [n for n in choice["candidates"] if n != "residual_ridge"]
    parts = choice["options"]["ensemble_equal"]
    assert [p["candidate"] for p in parts] == singles
    assert all(p["weight"] == pytest.approx(1 / len(singles)) for p in parts)  # equal weights
    forced = {**choice, "chosen": "ensemble_equal", "parts": parts}
    model, (_, rows, present) = refit(ctx, "auto", forced, train, seed=0)
    n = len(ctx.data)
    for part in model.parts:  # each part standardised on the training part, not on the held-out patients
        raw = part.predictor.predict(part.design({m: rows[m] for m in part.modalities},
                                                 {m: present[m] for m in part.modalities}, n))
        z = (raw - part.shift) / part.scale
        assert np.mean(z[train]) == pytest.approx(0.0, abs=1e-9) and np.std(z[train]) == pytest.approx(1.0)
    held = [i for i in range(n) if i not in train]
    risk = predict_idx(model, rows, present, list(range(n)))
    assert np.isfinite(risk[held]).all()


def test_calibration_is_fitted_on_the_spread_of_the_shipped_ensemble_risk(tmp_path):
    import json

    from test_auto import _export

    from chimera_surv.bundle import load_bundle
    from train.protocol import oof_standardised, spread_ratio

    out, ctx = _export(tmp_path, "ensemble_equal", "spread")
    members = [json.loads(p.read_text()) for p in sorted((ctx.work / "members").glob("r*.json"))]
    ratio = spread_ratio(members)
    assert 0.0 < ratio < 1.0  # the average of members is narrower than one member
    doc = json.loads((out / "bundle.json").read_text())
    assert doc["meta"]["shipped_risk_spread_ratio"] == pytest.approx(ratio)
    assert doc["meta"]["auto_member_choices"] == ["ensemble_equal", "ensemble_equal"]
    assert "seen by neither the choice nor the fit" in doc["meta"]["oof_provenance"]  # the report's caveat
    bundle = load_bundle(out)
    z = np.asarray([(np.asarray(r["risk_all"]) - r["risk_shift"]) / r["risk_scale"] for r in members])
    shipped = z.mean(axis=0) / ratio  # what bundle.predict averages: member scales multiplied by the ratio
    assert [m.risk_scale for m in bundle.members] == pytest.approx([r["risk_scale"] * ratio for r in members])
    oof = oof_standardised(ctx, members)  # what the calibration was fitted on
    assert np.std(shipped) == pytest.approx(np.mean(np.std(z, axis=1)))
    assert 0.6 < np.std(shipped) / np.std(oof) < 1.6
    assert np.std(z.mean(axis=0)) / np.std(oof) < np.std(shipped) / np.std(oof)  # without the ratio: narrower


def test_member_repeats_give_each_patient_one_oof_risk_per_repeat_and_the_ratio_their_average_spread(tmp_path):
    """`protocol.member_repeats: 2`: 2 × `members` splits; every patient is out-of-fold for one member of each
    repeat, its calibration risk is their average, and the shipped risk is put on that average's spread."""
    from test_auto import _ctx

    from train.protocol import fit_classical_members, member_splits, oof_standardised, spread_ratio

    arch = {"name": "auto", "fixed": "ensemble_equal"}
    ctx = _ctx(tmp_path / "rep", arch)
    ctx.config["protocol"]["member_repeats"] = 2
    splits = member_splits(ctx)
    assert [s.name for s in splits] == ["r0f0", "r0f1", "r1f0", "r1f1"]
    for repeat in (0, 1):
        tests = [set(s.test) for s in splits if s.repeat == repeat]
        assert set().union(*tests) == set(range(len(ctx.data))) and not tests[0] & tests[1]
    assert splits[0].test != splits[2].test  # the second repeat shuffles differently
    members = fit_classical_members(ctx, arch)
    assert [m["split"] for m in members] == ["r0f0", "r0f1", "r1f0", "r1f1"]
    assert [m["name"] for m in members] == ["member0", "member1", "member0r1", "member1r1"]  # no two alike
    z = np.asarray([(np.asarray(r["risk_all"]) - r["risk_shift"]) / r["risk_scale"] for r in members])
    oof = oof_standardised(ctx, members)
    by_split = {m["split"]: m for m in members}
    for i in (0, 5, 17):  # the average of the one member of each repeat that did not train on the patient
        own = [by_split[s.name] for s in splits if i in s.test]
        values = [(r["oof_risk"][r["oof"].index(i)] - r["risk_shift"]) / r["risk_scale"] for r in own]
        assert len(own) == 2 and oof[i] == pytest.approx(np.mean(values))
    reference = np.mean([np.std(z[[0, 2]].mean(axis=0)), np.std(z[[1, 3]].mean(axis=0))])
    assert spread_ratio(members) == pytest.approx(np.std(z.mean(axis=0)) / reference)


def test_worker_count_and_a_single_member_repeat_leave_the_work_folder_hash_alone():
    """`auto.network_jobs` changes how fast, not what is fitted, and `member_repeats: 1` is what runs did before the
    key existed: neither may invalidate a work folder. A second repeat fits other members: a new hash."""
    from train.config import config_hash, load_config

    base = {"task": 3, "seed": 0, "modalities": ["clinical"], "recipe": {"encoder": "test-tiny", "weights": "seeded"}}
    plain = load_config(base)
    h = config_hash(plain)
    assert config_hash(load_config({**base, "auto": {"network_jobs": 4}})) == h
    assert config_hash(load_config({**base, "protocol": {"member_repeats": 1}})) == h
    assert config_hash(load_config({**base, "protocol": {"member_repeats": 2}})) != h
    assert config_hash(load_config({**base, "auto": {"inner_folds": 3}})) != h


@pytest.mark.parametrize("jobs", [0, -1, 1.5, "2", True])
def test_a_network_jobs_that_is_not_a_worker_count_is_one_config_error(jobs):
    from train.config import ConfigError, load_config

    base = {"task": 3, "seed": 0, "modalities": ["clinical"], "recipe": {"encoder": "test-tiny", "weights": "seeded"}}
    with pytest.raises(ConfigError, match="network_jobs"):
        load_config({**base, "auto": {"network_jobs": jobs}})


def _planted_inner(n: int = 160, seed: int = 0):
    """An Inner whose `rsf` (and, exactly, a fake network) carry the risk and every other setting is noise."""
    from train.classical import FAMILIES
    from train.selection.inner import Inner

    rng = np.random.default_rng(seed)
    truth = rng.normal(size=n)
    time = rng.exponential(np.exp(-truth))
    data = SimpleNamespace(time=time, event=np.ones(n), label=np.zeros(n), modalities=["clinical"])
    folds = np.arange(n) % 5
    splits = [([i for i in range(n) if folds[i] != f], [i for i in range(n) if folds[i] == f]) for f in range(5)]
    val = {}
    for name, cand in AUTO_DEFAULTS["candidates"].items():
        for g, _ in enumerate(FAMILIES.build({"name": cand["family"]}).grid()):
            val[f"{name}#{g}"] = [truth[va] + rng.normal(size=len(va)) if name == "rsf"
                                  else rng.normal(size=len(va)) for _, va in splits]
    val["network:fake#0"] = [truth[va] for _, va in splits]  # the best option of all
    return SimpleNamespace(data=data, survival=True, config={}), Inner(splits, ["kfold"] * 5, val)


@pytest.mark.parametrize("switch,expected", [("any", "rsf"), ("networks", "ensemble_equal"),
                                             ("none", "ensemble_equal")])
def test_switch_decides_which_options_may_replace_the_equal_ensemble(switch, expected):
    from train.selection.select import choose

    ctx, inner = _planted_inner()
    settings = {**AUTO_DEFAULTS, "switch": switch}
    choice = choose(ctx, inner, settings)
    assert choice["chosen"] == expected
    mean, se = choice["gains_vs_default"]["rsf"]
    assert mean > settings["switch_se"] * se  # rsf clears the gain in every case: only `switch` keeps the default


@pytest.mark.parametrize("switch,expected", [("networks", "network:fake"), ("any", "network:fake"),
                                             ("none", "ensemble_equal")])
def test_a_network_that_clears_the_gain_replaces_the_default_unless_switch_is_none(monkeypatch, switch, expected):
    import importlib

    select_module = importlib.import_module("train.selection.select")  # the module (the package exports a function)
    monkeypatch.setattr(select_module, "network_options", lambda *a: {"network:fake": {}})
    ctx, inner = _planted_inner()
    choice = select_module.choose(ctx, inner, {**AUTO_DEFAULTS, "switch": switch})
    assert choice["chosen"] == expected


def test_an_unknown_switch_is_a_config_error():
    from train.config import ConfigError, load_config

    raw = {"task": 3, "cohort": {"root": "c"}, "auto": {"switch": "sometimes"}}
    with pytest.raises(ConfigError, match="switch"):
        load_config(raw)
