"""`model: auto` and classical bundles on a small in-memory cohort with slides, clinical data and RNA: inner
selection stays inside the training part (leave-one-cohort-out with two cohorts), every family exports a bundle
that loads, predicts, degrades when a modality is missing, and two runs write byte-identical bundles."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from chimera_surv.bundle import ModalityInputs, load_bundle
from chimera_surv.classical.model import ClassicalModel
from chimera_surv.features import Bag
from chimera_surv.readers.clinical import load_schema, parse_clinical
from chimera_surv.readers.rna import parse_rna
from train.config import config_hash, load_config
from train.data import CohortArrays
from train.protocol import RunContext

GENES = [f"G{i}" for i in range(10)]
N, WSI_DIM = 64, 6
SMALL = {"candidates": {"clinical_ridge": {"family": "ridge", "modalities": ["clinical"]},
                        "ridge": {"family": "ridge"}, "coxnet": {"family": "coxnet"},
                        "rsf": {"family": "rsf", "params": {"n_estimators": 12}},
                        "gbsa": {"family": "gbsa", "params": {"stages": [10, 20]}}},
         "ensembles": [2, 3], "inner_folds": 3, "loco_min_size": 10, "wsi_components": 3}


def _clinical(rng, z):
    return {"age": float(np.clip(65 + 8 * z + rng.normal(), 40, 90)), "sex": str(rng.choice(["Male", "Female"])),
            "stage": "T1HG" if z + rng.normal() > 0 else "TaHG", "no_instillations": float(rng.integers(0, 30))}


def _data(seed=0, n=N, survival=True):
    rng = np.random.default_rng(seed)
    schema = load_schema(3)
    z = rng.normal(size=n)
    time = rng.exponential(30 * np.exp(-z)) + 1
    data = CohortArrays(case_ids=[f"P{i:03d}" for i in range(n)], cohorts=["3A" if i % 2 else "3B" for i in range(n)],
                        time=time if survival else np.full(n, np.nan),
                        event=(rng.random(n) < 0.7).astype(np.int64) if survival else np.zeros(n, np.int64),
                        label=np.full(n, -1) if survival else (z + rng.normal(size=n) > 0).astype(np.int64),
                        modalities=["wsi", "clinical", "rna"])
    data.records = [parse_clinical(_clinical(rng, v), schema) for v in z]
    data.rna = np.exp(rng.normal(size=(n, len(GENES))) + z[:, None] * (np.arange(len(GENES)) < 3)).astype(np.float32)
    data.bags = [(rng.normal(size=(int(rng.integers(2, 7)), WSI_DIM)) + v).astype(np.float32) for v in z]
    data.bags[3] = None  # one patient without slides
    return data, schema


def _raw(tmp_path, model="auto", survival=True):
    return {"task": 3 if survival else 2, "seed": 0, "modalities": ["wsi", "clinical", "rna"], "genes": "g.json",
           "work_dir": str(tmp_path / "work"), "preprocess": {"rna": {"log1p": True, "zscore": True}},
           "protocol": {"folds": 3, "repeats": 1, "inner_val": 0.25, "cohort_holdout": True, "bootstrap": 10,
                        "members": 2},
           "recipe": {"encoder": "test-tiny", "weights": "seeded"}, "model": model, "auto": SMALL}


def _ctx(tmp_path, model, survival=True, seed=0):
    data, schema = _data(seed, survival=survival)
    config = load_config(_raw(tmp_path, model, survival))
    return RunContext(data, schema, config, tmp_path / "work", survival, config_hash(config))


def test_auto_selects_on_inner_cohorts_of_the_training_part_only(tmp_path):
    from train.protocol import cv_splits, evaluate_split
    from train.selection import auto_settings, choose, inner_splits, run_inner, select

    ctx = _ctx(tmp_path, "auto")
    split = cv_splits(ctx)[0]
    train = list(split.train)
    inner, kinds = inner_splits(ctx.data, train, auto_settings("auto", ctx.config), seed=0)
    # two cohorts of >= 10 patients: their two leave-one-cohort-out splits join 3 folds x 2 repeats, never 2 alone
    assert kinds == ["kfold"] * 6 + ["loco"] * 2 and len(inner) == 8
    for (tr, va), kind in zip(inner, kinds):
        assert set(tr) | set(va) <= set(train) and not set(tr) & set(va)
        assert kind == "kfold" or len({ctx.data.cohorts[i] for i in va}) == 1
    choice = select(ctx, "auto", train, seed=0)
    assert choice["chosen"] in choice["scores"] and choice["inner"] == "kfold+loco"
    assert {"clinical_ridge", "ridge", "rsf", "gbsa", "ensemble_top2", "ensemble_equal"} <= set(choice["scores"])
    assert any(name.startswith("backbone_residual") for name in choice["scores"])
    # the default rule (switch: networks): without networks the equal ensemble is kept whatever the inner gains
    assert choice["default"] == "ensemble_equal" and choice["chosen"] == "ensemble_equal"
    assert "only a network option may replace it" in choice["rule"]
    # switch: any: kept unless another option's paired gain clears one corrected SE; then the best such
    settings = {**auto_settings("auto", ctx.config), "switch": "any"}
    fits = run_inner(ctx, train, settings, seed=0)  # the switch rule does not change the inner fits
    # also_predict (for the committee of inner models): each inner model's z-scored risk on other patients,
    # here the training part itself, so that on each split's validation patients it is exactly the inner risk
    also = run_inner(ctx, train, settings, seed=0, also_predict=train)
    assert set(also.also) == set(also.val) and not fits.also
    for key, per_split in also.val.items():
        for s, (_, va) in enumerate(also.splits):
            at = [train.index(i) for i in va]
            np.testing.assert_allclose(also.also[key][s][at], per_split[s], rtol=0, atol=1e-12)
    anyrule = choose(ctx, fits, settings)
    cleared = [n for n, (m, se) in anyrule["gains_vs_default"].items() if m > se]
    assert anyrule["chosen"] == max(["ensemble_equal", *cleared], key=lambda n: anyrule["scores"][n])
    assert anyrule["gains_vs_default"] == choice["gains_vs_default"]  # the same inner scores, another rule
    none = choose(ctx, fits, {**settings, "switch": "none"})
    assert none["chosen"] == "ensemble_equal" and "always the default" in none["rule"]
    assert "ridge#0" in choice["null_settings"]  # the start of the penalty path: all-zero coefficients
    assert choice["settings"]["ridge"]["alpha_ratio"] < 1.0  # ... which is never a family's chosen setting
    record = evaluate_split(ctx, "model", "auto", split)
    assert record["test"] == list(split.test) and np.isfinite(record["risk"]).all()
    assert record["auto"]["chosen"] in record["auto"]["scores"] and 0 <= record["metric"] <= 1
    # cv_model: committee (the default): the test patients' risk is the chosen parts' inner k-fold models averaged
    assert record["cv_model"] == "committee"
    test = list(split.test)
    inner_test = run_inner(ctx, train, auto_settings("auto", ctx.config), seed=record_seed(ctx, split),
                           also_predict=test)
    kfold = [s for s, k in enumerate(inner_test.kinds) if k == "kfold"]
    parts = choose(ctx, inner_test, auto_settings("auto", ctx.config))["parts"]
    expected = sum(p["weight"] * np.mean([inner_test.also[f"{p['candidate']}#{p['setting']}"][s] for s in kfold], 0)
                   for p in parts)
    np.testing.assert_allclose(record["risk"], expected, rtol=0, atol=1e-12)
    # cv_model: refit: one model refitted on the whole training part, a different risk from the same choice
    refit_ctx = _ctx(tmp_path / "refit", {"name": "auto", "cv_model": "refit"})
    refit_record = evaluate_split(refit_ctx, "model", {"name": "auto", "cv_model": "refit"}, split)
    assert refit_record["cv_model"] == "refit" and refit_record["auto"]["chosen"] == record["auto"]["chosen"]
    assert not np.allclose(refit_record["risk"], record["risk"])
    assert record["modalities"] == refit_record["modalities"]  # the same parts read the same modalities
    with pytest.raises(Exception, match="cv_model"):
        load_config({**_raw(tmp_path), "auto": {**SMALL, "cv_model": "bagged"}})


def record_seed(ctx, split):
    from train.protocol import _split_seed

    return _split_seed(ctx.config, split, 0)


OPTIONS = ["ridge", "coxnet", "rsf", "gbsa", "backbone_residual(lambda=0.5)", "ensemble_top3", "ensemble_equal"]


def _export(tmp_path, option, name, survival=True):
    from train.export import export
    from train.protocol import fit_classical_members

    arch = {"name": "auto", "fixed": option}  # every member selects on its own training part; the option is forced
    ctx = _ctx(tmp_path / name, arch, survival)
    members = fit_classical_members(ctx, arch)
    assert [m["auto"]["chosen"] for m in members] == [option, option]
    out = export(ctx, members, tmp_path / name / "bundle", ctx.config["recipe"], GENES)
    return out, ctx


@pytest.mark.parametrize("option", OPTIONS)
def test_every_family_bundle_loads_predicts_and_degrades(tmp_path, option):
    out, _ = _export(tmp_path, option, "one")
    bundle = load_bundle(out)
    doc = json.loads((out / "bundle.json").read_text())
    assert {m["kind"] for m in doc["members"]} == {"classical"} and doc["meta"]["auto"]["chosen"] == option
    rng = np.random.default_rng(5)
    record = parse_clinical(_clinical(rng, 1.0), bundle.clinical_schema)
    rna = parse_rna({g: float(np.exp(rng.normal())) for g in GENES}, GENES)
    bag = Bag(features=rng.normal(size=(4, WSI_DIM)).astype(np.float32), coords=np.zeros((4, 3), np.int64))
    full = bundle.predict(ModalityInputs(wsi=bag, clinical=record, rna=rna))
    assert full.used == bundle.modalities and np.isfinite(full.value) and full.value > 0
    # The bundle's risk is the members' classical models on the same encoding (no other path).
    member = bundle.members[0]
    assert isinstance(member.model, ClassicalModel)
    for drop in bundle.modalities:  # each modality missing in turn: the documented degraded path, finite
        kwargs = {"wsi": bag, "clinical": record, "rna": rna}
        kwargs[drop] = None
        part = bundle.predict(ModalityInputs(**kwargs))
        assert np.isfinite(part.value) and drop not in part.used
    if option not in ("ensemble_top3", "backbone_residual(lambda=0.5)"):  # together they hold every family
        return
    again, _ = _export(tmp_path, option, "two")
    for name in ("bundle.json", "weights.safetensors"):
        assert (out / name).read_bytes() == (again / name).read_bytes()


def test_binary_task_auto_gives_a_probability(tmp_path):
    out, _ = _export(tmp_path, "ensemble_top2", "bin", survival=False)
    bundle = load_bundle(out)
    rng = np.random.default_rng(1)
    prediction = bundle.predict(ModalityInputs(clinical=parse_clinical(_clinical(rng, 0.5), bundle.clinical_schema)))
    assert bundle.output_kind == "probability" and 0 < prediction.value < 1


def test_train_cli_with_model_auto_reports_its_choice(tmp_path, capsys):
    """`python -m train` with `model: auto` on a new user's cohort (own schema and genes): CV, members, bundle,
    and a report that says what auto chose and on which inner scores."""
    from train.__main__ import main

    rng = np.random.default_rng(3)
    schema = {"name": "mine", "features": {"ki67": {"type": "numeric"},
                                           "grade": {"type": "categorical", "categories": ["low", "high"]}},
              "labels": {"time": "os", "event": "death", "event_true": ["1"]}}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    (tmp_path / "genes.json").write_text(json.dumps(GENES))
    for k in range(40):
        z = rng.normal()
        case = tmp_path / "cohort" / "data" / f"P{k:03d}"
        case.mkdir(parents=True)
        (case / f"P{k:03d}_CD.json").write_text(json.dumps(
            {"ki67": 30 + 15 * z, "grade": "high" if z + rng.normal() > 0 else "low",
             "os": float(rng.exponential(40 * np.exp(-z)) + 1), "death": int(rng.random() < 0.7)}))
        (case / f"P{k:03d}_RNA.json").write_text(json.dumps({g: float(np.exp(rng.normal() + z * (i < 3)))
                                                             for i, g in enumerate(GENES)}))
    (tmp_path / "config.yaml").write_text(
        "task: 3\nschema: schema.json\ngenes: genes.json\nmodalities: [clinical, rna]\ncohort: {root: cohort}\n"
        "work_dir: work\nout: bundle\nprotocol: {folds: 3, repeats: 1, bootstrap: 10, members: 2}\nmodel: auto\n"
        f"auto: {json.dumps({k: v for k, v in SMALL.items() if k != 'wsi_components'})}\n"
        "compare: {coxnet: {family: coxnet}}\n")
    assert main([str(tmp_path / "config.yaml"), "--steps", "fit", "cv", "export", "report"]) == 0
    said = capsys.readouterr().out  # the CV figures and each fold's choice on the console (and in train.log)
    assert re.search(r"cv: model: Harrell C-index 0\.\d{3} ± 0\.\d{3} \(mean ± SD over 3 test folds\); chose "
                     r"\S+ in \d of 3", said)
    assert re.search(r"cv: coxnet: Harrell C-index 0\.\d{3} ± 0\.\d{3} \(mean ± SD over 3 test folds\)\n", said)
    # a fixed family has nothing to choose: no "chose model in 3 of 3" (a new user found that line meaningless)
    assert "read from" not in said  # export and report reuse this process's fit and cv, they do not re-read them
    assert "cohort-held-out: none: the data hold fewer than two cohorts" in said  # one cohort: said, not silent
    assert f"export: bundle written to {(tmp_path / 'bundle').resolve()}" in said
    assert "; chose " in (tmp_path / "work" / "train.log").read_text()
    report = (tmp_path / "work" / "report" / "report.md").read_text()
    chosen = json.loads((tmp_path / "work" / "members" / "r0f0.json").read_text())["auto"]["chosen"]
    # the report's own wording and markup belong to train/report/; here: the section exists and names the choice
    assert "Automatic model choice" in report and "| coxnet |" in report
    section = report[report.index("Automatic model choice"):]
    assert f"Exported (first member): {chosen}" in section.replace("*", "").split("\n## ")[0]
    # each member chose on its own training part, which the "why" line says (it once said "the whole cohort")
    assert "of its own training part, never on its held-out fold" in report and "splits of the whole cohort" not in report
    bundle = load_bundle(tmp_path / "bundle")
    record = parse_clinical({"ki67": 60, "grade": "high"}, bundle.clinical_schema)
    assert np.isfinite(bundle.predict(ModalityInputs(clinical=record)).value)


def _site_shifted_ctx(tmp_path, within_options):
    """RNA seen through per-patient library sizes and range compressions of log expression, which `standardise`
    removes within each sample and a gene-wise z-score does not."""
    ctx = _ctx(tmp_path, {"name": "auto", "rna_within": within_options})
    data = ctx.data
    rng = np.random.default_rng(5)
    log_x = np.log(data.rna.astype(np.float64))  # the signal genes, plus 50 more so a profile has a shape of its own
    log_x = np.hstack([4.0 + log_x, rng.normal(4.0, 1.0, 50) + 0.3 * rng.normal(size=(len(log_x), 50))])
    for i in range(len(log_x)):  # every patient's library size and range differ (two platforms, fresh samples)
        log_x[i] = 4.0 + rng.normal(0, 1.0) + rng.uniform(0.3, 1.0) * (log_x[i] - 4.0)
    data.rna = np.exp(log_x).astype(np.float32)
    return ctx


def test_auto_chooses_the_rna_within_sample_transform_on_held_out_cohorts(tmp_path):
    from train.report.render import _markdown_block
    from train.report.sections import auto_choice
    from train.selection import _choice_summary, refit, select

    ctx = _site_shifted_ctx(tmp_path, ["standardise"])
    everyone = list(range(len(ctx.data)))
    choice = select(ctx, ctx.config["model"], everyone, seed=0)
    scores = choice["rna_within_scores"]
    assert set(scores) == {"none", "standardise"}
    assert choice["rna_within"] in scores and scores[choice["rna_within"]] == choice["scores"][choice["chosen"]]
    # every profile distorted per patient: the harmonisation wins on both held-out cohorts and replaces `none`
    assert choice["rna_within"] == "standardise" and scores["standardise"] > scores["none"]
    _, (enc, _, _) = refit(ctx, ctx.config["model"], choice, everyone, seed=0)
    assert enc.preprocessing["rna"]["within_sample"] == choice["rna_within"]  # what the bundle's member records
    _, blocks = auto_choice({"auto": {"exported": _choice_summary(choice)}})  # the report says which won and why
    text = "\n".join(line for block in blocks for line in _markdown_block(block))
    assert f"RNA within-sample transform: {choice['rna_within']} (" in text
    forced = select(ctx, {"name": "auto", "rna_within": []}, everyone, seed=0)
    assert forced["rna_within"] == "none" and set(forced["rna_within_scores"]) == {"none"}


def test_auto_tries_no_rna_transform_without_held_out_cohorts(tmp_path):
    from train.selection import select

    ctx = _site_shifted_ctx(tmp_path, ["standardise"])
    choice = select(ctx, {"name": "auto", "loco": False}, list(range(len(ctx.data))), seed=0)
    assert choice["inner"] == "kfold" and choice["rna_within"] == "none" and "rna_within_scores" not in choice


def test_auto_fixed_option_overrides_the_inner_choice_and_is_checked(tmp_path):
    from train.selection import select

    ctx = _ctx(tmp_path, "auto")
    everyone = list(range(len(ctx.data)))
    choice = select(ctx, {"name": "auto", "fixed": "ensemble_top3", "loco": False}, everyone, seed=0)
    assert choice["chosen"] == "ensemble_top3" and len(choice["parts"]) == 3
    assert choice["scores"][choice["best"]] == max(choice["scores"].values())  # the inner winner is still reported
    assert "fixed in the config" in choice["rule"]
    with pytest.raises(ValueError, match="auto.fixed"):
        select(ctx, {"name": "auto", "fixed": "no_such_option", "loco": False}, everyone, seed=0)


def test_auto_restricted_to_some_modalities_uses_only_those(tmp_path):
    from train.selection import refit, select

    ctx = _ctx(tmp_path, "auto")
    everyone = list(range(len(ctx.data)))
    arch = {"name": "auto", "modalities": ["clinical"], "loco": False}
    choice = select(ctx, arch, everyone, seed=0)
    assert not any(n.startswith(("backbone", "residual")) for n in choice["scores"])  # nothing else to add
    model, _ = refit(ctx, arch, choice, everyone, seed=0)
    assert model.modalities == ["clinical"]


def test_a_candidate_whose_modality_is_too_sparse_is_left_out_not_the_run(tmp_path):
    """Slides for only two patients: the image-only residual cannot be fitted on an inner training part, so auto
    drops that candidate (saying so) and still chooses among the others."""
    from train.selection import select

    ctx = _ctx(tmp_path, "auto")
    ctx.data.bags = [b if i in (0, 1) else None for i, b in enumerate(ctx.data.bags)]
    arch = {"name": "auto", "modalities": ["wsi", "clinical"], "loco": False}
    choice = select(ctx, arch, list(range(len(ctx.data))), seed=0)
    assert "residual_ridge" in choice["dropped_candidates"]
    assert "fewer than three" in choice["dropped_candidates"]["residual_ridge"]
    assert not any(n.startswith("backbone_residual") for n in choice["scores"])
    assert choice["chosen"] in choice["scores"]


TINY_TRAIN = {"epochs": 3, "patience": 2, "min_epochs": 1, "seeds": 1, "batch_size": 16, "max_patches": 8}


def _net_ctx(tmp_path, fixed=None):
    ctx = _ctx(tmp_path, "auto")
    ctx.config["train"].update(TINY_TRAIN)
    arch = {"name": "auto", "loco": False, "inner_repeats": 1, "networks": {"abmil": {}},
            **({"fixed": fixed} if fixed else {})}
    return ctx, arch


def test_networks_are_auto_options_on_the_same_inner_splits_and_cached(tmp_path):
    """`auto.networks`: each network is trained on every inner split, scored beside the classical options under
    the same rule, and its inner fits are cached, so a second selection trains nothing."""
    from train.selection import select

    ctx, arch = _net_ctx(tmp_path)
    train = list(range(48))
    choice = select(ctx, arch, train, seed=0)
    assert "network:abmil" in choice["scores"] and np.isfinite(choice["scores"]["network:abmil"])
    assert "network:abmil" in choice["gains_vs_default"] or choice["default"] == "network:abmil"
    cached = sorted((ctx.work / "auto_inner").rglob("*.json"))
    assert len(cached) == choice["n_inner_splits"] == 3
    stamps = [p.stat().st_mtime_ns for p in cached]
    again = select(ctx, arch, train, seed=0)
    assert again["scores"] == choice["scores"] and [p.stat().st_mtime_ns for p in cached] == stamps


def test_a_chosen_network_is_what_the_cv_split_and_the_bundle_run(tmp_path):
    from train.export import export
    from train.protocol import cv_splits, evaluate_split, fit_classical_members

    ctx, arch = _net_ctx(tmp_path, fixed="network:abmil")
    record = evaluate_split(ctx, "model", arch, cv_splits(ctx)[0])
    assert record["auto"]["chosen"] == "network:abmil" and record["stopping"] == "holdout"
    assert np.isfinite(record["risk"]).all() and 0 <= record["metric"] <= 1
    members = fit_classical_members(ctx, arch)
    assert {m["kind"] for m in members} == {"network"} and len(members) == 2
    held_out = sorted(i for m in members for i in m["oof"])
    assert held_out == list(range(len(ctx.data)))  # every patient's calibration risk comes from a member not fit on it
    out = export(ctx, members, tmp_path / "bundle", ctx.config["recipe"], GENES)
    bundle = load_bundle(out)
    assert {m.get("kind", "network") for m in json.loads((out / "bundle.json").read_text())["members"]} == {"network"}
    rng = np.random.default_rng(5)
    record = parse_clinical(_clinical(rng, 1.0), bundle.clinical_schema)
    rna = parse_rna({g: float(np.exp(rng.normal())) for g in GENES}, GENES)
    bag = Bag(features=rng.normal(size=(4, WSI_DIM)).astype(np.float32), coords=np.zeros((4, 3), np.int64))
    result = bundle.predict(ModalityInputs(wsi=bag, clinical=record, rna=rna))
    assert np.isfinite(result.value) and result.used == bundle.modalities == ["wsi", "clinical", "rna"]
    assert np.isfinite(bundle.predict(ModalityInputs(wsi=None, clinical=record, rna=rna)).value)
    again = fit_classical_members(ctx, arch)  # resumed from the work folder, not retrained
    assert [m["oof_risk"] for m in again] == [m["oof_risk"] for m in members]


def test_inner_network_fits_on_two_worker_processes_give_the_same_risks_as_one_after_another(tmp_path):
    """`auto.network_jobs: 2` runs the uncached inner fits on joblib worker processes; every fit seeds itself, so
    the inner risks (and the choice) are the same bytes as in one process."""
    from train.selection import select

    runs = {}
    for jobs in (1, 2):
        ctx, arch = _net_ctx(tmp_path / f"jobs{jobs}")
        choice = select(ctx, {**arch, "network_jobs": jobs}, list(range(48)), seed=0)
        cached = sorted((ctx.work / "auto_inner").rglob("*.json"))
        assert len(cached) == 3
        runs[jobs] = (choice["scores"], [json.loads(p.read_text())["z"] for p in cached], [p.name for p in cached])
    assert runs[1] == runs[2]
