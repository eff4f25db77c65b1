"""The training report and an explained case, as people see them: one Chromium test per report kind (a CHIMERA task
with slides, network and classical; a generic survival cohort; the explain page), each judged on the rendered DOM at
1280 px (every section present, every figure with pixels, nothing wider than its box, no console error); slide
heatmaps on an absolute scale with a noise floor, from training (out-of-fold patients) and from `inference.py
--explain`, which never changes or fails the case; the numbers the tables show (clinical-only comparator, spreads,
horizons)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from browser import assert_complete, render

import inference
from chimera_surv import synthetic
from chimera_surv.make_cases import write_gc_cases, write_training_cohort
from train import demo
from train.__main__ import Run
from train.config import load_config


def _task2_report(root: Path, cohort: Path, name: str, model) -> Path:
    """A tiny Task 2 run (slides + clinical) of `model` through every step up to the report; the bundle folder."""
    raw = yaml.safe_load((demo.CONFIG_DIR / "demo_task2.yaml").read_text())
    raw["model"] = model
    raw.update({"_base": str(demo.CONFIG_DIR), "cohort": {"root": str(cohort)}, "work_dir": str(root / f"work-{name}"),
                "out": str(root / f"model-{name}" / "bladder-brs"), "encoder_root": str(root / "encoders"),
                "compare": {}, "report": {"heatmaps": 2}})
    raw["protocol"].update(folds=3, members=3, bootstrap=20)
    raw["train"].update(epochs=6, patience=3, min_epochs=2)
    run = Run(load_config(raw))
    for step in ("extract", "fit", "cv", "export", "report"):
        getattr(run, step)()
    return root / f"model-{name}"


@pytest.fixture(scope="module")
def task2_cohort(tmp_path_factory) -> dict:
    """A 40-patient Task 2 training cohort and one held-out case with a larger slide."""
    root = tmp_path_factory.mktemp("report-html")
    cohort = root / "cohort"
    # slides large enough for several tissue patches: a one-patch slide gets a sentence, not a map
    training = dataclasses.replace(demo._options(2, "training"), wsi_size=(1536, 1152))
    write_training_cohort(synthetic.make_cohort(2, 40, 0, training), cohort, workers=1)
    options = dataclasses.replace(demo._options(2, "test"), wsi_size=(2048, 1536))
    case = Path(write_gc_cases(synthetic.make_cohort(2, 1, 7, options), root / "cases", seed=7)[0])
    return {"root": root, "cohort": cohort, "case": case}


@pytest.fixture(scope="module")
def task2_run(task2_cohort) -> dict:
    """The demo's network (ABMIL attention for the heatmaps; auto is classical)."""
    root = task2_cohort["root"]
    deep = yaml.safe_load((demo.CONFIG_DIR / "demo_task2.yaml").read_text())["compare"]["deep"]
    model = _task2_report(root, task2_cohort["cohort"], "deep", deep)
    return {"report": root / "work-deep" / "report", "model": model, "case": task2_cohort["case"], "root": root}


@pytest.fixture(scope="module")
def task2_classical(task2_cohort) -> dict:
    """A classical family on every modality (pooled slide PCA + clinical): occlusion maps instead of attention."""
    root = task2_cohort["root"]
    model = _task2_report(root, task2_cohort["cohort"], "ridge", {"family": "ridge"})
    return {"report": root / "work-ridge" / "report", "model": model, "case": task2_cohort["case"], "root": root}


def _md_sections(report: Path) -> list[str]:
    return [line[3:] for line in (report / "report.md").read_text().splitlines() if line.startswith("## ")]


def _drawn(heatmaps: list[dict]) -> int:
    return sum(1 for h in heatmaps if h.get("file"))


def test_training_report_renders_every_figure_in_chromium(task2_run, tmp_path):
    report = task2_run["report"]
    summary = json.loads((report / "report.json").read_text())
    assert set(summary["figures"]) == {"training_curves", "roc", "reliability", "f1_threshold"}
    assert summary["model_choice"]["chosen"] == "model" and summary["model_choice"]["why"]
    heatmaps = summary["heatmaps"]
    assert _drawn(heatmaps) >= 2 and all((report / h["file"]).stat().st_size > 5000 for h in heatmaps if h["file"])
    assert {h["kind"] for h in heatmaps} == {"attention"}  # networks keep their attention maps
    assert heatmaps[0]["risk_pct"] < 50 < heatmaps[-1]["risk_pct"]  # both ends of the risk scale
    auc = summary["figure_numbers"]["roc_auc"]["value"]  # the ROC's AUC is the number printed beside it
    assert f"{auc:.3f}" in (report / "report.md").read_text()
    check, console, shot = render(report / "report.html", tmp_path)
    sections = _md_sections(report)  # markdown and HTML carry the same sections
    assert check["sections"] == sections and "Early stopping used an inner split" in (report / "report.md").read_text()
    assert_complete(check, console, shot, ["About these numbers", "Model chosen", "Cross-validation",
                                           "Cohort-held-out", "Exported ensemble", "Clinical variables", "Figures",
                                           "Slide heatmaps"], len(summary["figures"]) + _drawn(heatmaps))


def explain_once(run: dict, tmp_path: Path, kind: str) -> tuple[list[Path], list[Path]]:
    """Run the case with and without --explain: the output must be byte-identical. Returns (pages, PNGs of kind)."""
    case, model = run["case"], run["model"]
    plain, explained = tmp_path / "plain", tmp_path / "explained"
    assert inference.main(["--input", str(case), "--output", str(plain), "--model", str(model)]) == 0
    assert inference.main(["--input", str(case), "--output", str(explained), "--model", str(model),
                           "--explain", str(tmp_path / "explain")]) == 0
    assert (plain / "brs-probability.json").read_text() == (explained / "brs-probability.json").read_text()
    return (list((tmp_path / "explain").glob("*_explained.html")),
            list((tmp_path / "explain").glob(f"*_{kind}.png")))


def test_explain_writes_heatmaps_and_never_changes_the_prediction(task2_run, tmp_path):
    pages, pngs = explain_once(task2_run, tmp_path, "attention")
    assert len(pages) == 1 and len(pngs) >= 1
    text = pages[0].read_text()  # the number says what it is and which model and data gave it
    assert "probability (0-1)" in text and "predicted probability of BRS3" in text and "modalities used" in text
    check, console, shot = render(pages[0], tmp_path, height=1400)
    assert_complete(check, console, shot, ["Attention heatmap"], len(pngs))


def test_a_classical_model_gets_occlusion_maps_in_the_report_and_from_explain(task2_classical, tmp_path):
    """Classical members pool the bag without attention: the report and --explain draw how much each patch raises
    the risk instead; no training curves and no early-stopping claim for a family without epochs."""
    report = task2_classical["report"]
    summary = json.loads((report / "report.json").read_text())
    heatmaps = summary["heatmaps"]
    assert "heatmaps_error" not in summary
    assert len(heatmaps) >= 2 and {h["kind"] for h in heatmaps} == {"occlusion"}
    assert all(h["file"].endswith("_occlusion.png") and (report / h["file"]).stat().st_size > 5000
               for h in heatmaps if h["file"])
    assert all(h["summary"] for h in heatmaps)  # each map states its range in risk SD, or that nothing stands out
    assert heatmaps[0]["risk_pct"] < 50 < heatmaps[-1]["risk_pct"]
    assert "training_curves" not in summary["figures"]
    markdown = (report / "report.md").read_text()
    assert "Early stopping" not in markdown and "no early stopping" in markdown
    check, console, shot = render(report / "report.html", tmp_path)
    assert check["sections"] == _md_sections(report)
    assert_complete(check, console, shot, ["Model chosen", "Cross-validation", "Figures",
                                           "Slide heatmaps: how much each patch raises the risk"],
                    len(summary["figures"]) + _drawn(heatmaps))

    pages, pngs = explain_once(task2_classical, tmp_path, "occlusion")
    assert len(pages) == 1 and not list((tmp_path / "explain").glob("*_attention.png"))
    check, console, shot = render(pages[0], tmp_path, height=1600)
    assert_complete(check, console, shot, ["How much each patch raises the risk"], len(pngs))


@pytest.fixture(scope="module")
def generic_survival(tmp_path_factory) -> dict:
    """A public cohort (GBSG2, bundled with scikit-survival) trained from a table: clinical only, `model: auto`."""
    from sksurv.datasets import load_gbsg2

    from train.table import train_table

    root = tmp_path_factory.mktemp("generic")
    X, y = load_gbsg2()
    frame = X.assign(time=y["time"] / 30.4375, event=y["cens"].astype(int))  # days → months
    frame.index = [f"p{i:03d}" for i in range(len(frame))]
    frame = frame.iloc[:170].rename_axis("case_id").reset_index()
    config = {"protocol": {"folds": 3, "members": 2, "bootstrap": 20, "cohort_holdout": False},
              "auto": {"candidates": {"coxnet": {"family": "coxnet"},
                                      "clinical_ridge": {"family": "ridge", "modalities": ["clinical"]}},
                       "ensembles": [], "backbone_residual": False, "inner_folds": 3}}
    bundle, report = train_table(frame.iloc[:150], work_dir=root / "run", out=root / "bundle", config=config)
    frame.iloc[150:].drop(columns=["time", "event"]).to_csv(root / "new.csv", index=False)
    return {"bundle": bundle, "report": report.parent, "new": root / "new.csv", "root": root,
            "max_time": float(frame["time"].iloc[:150].max())}


def test_a_generic_survival_report_is_complete_and_true(generic_survival, tmp_path):
    report = generic_survival["report"]
    summary = json.loads((report / "report.json").read_text())
    assert set(summary["figures"]) == {"km_by_risk_group", "calibration_horizons"}  # no empty training curves
    horizons = summary["figure_numbers"]["horizons"]
    assert len(horizons) == len(set(horizons)) >= 2  # distinct panels
    evaluation = summary["evaluation"]
    assert {"harrell_c", "uno_c", "td_auc", "ci95"} <= set(evaluation) and "error" not in evaluation
    terms = summary["model_terms"]
    assert terms["effect"] == "hazard ratio per SD" and all(r["ci95"][0] <= r["effect"] <= r["ci95"][1]
                                                            for r in terms["rows"])
    markdown = (report / "report.md").read_text()
    assert "± 0.000" not in markdown and "(one value)" in markdown  # one repeat: no spread printed
    check, console, shot = render(report / "report.html", tmp_path)
    assert check["sections"] == _md_sections(report)
    assert_complete(check, console, shot, ["About these numbers", "Model chosen", "Automatic model choice",
                                           "Cross-validation", "Survival evaluation", "Cohort-held-out",
                                           "Exported ensemble", "Clinical variables", "Figures"],
                    len(summary["figures"]))


def test_predict_cohort_gives_survival_at_horizons_and_flags_times_past_the_data(generic_survival, tmp_path):
    import csv

    from chimera_surv.predict_cohort import predict_cohort

    path, _ = predict_cohort(generic_survival["bundle"], generic_survival["new"], tmp_path / "pred.csv")
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    bundle_meta = json.loads((generic_survival["bundle"] / "bundle.json").read_text())["meta"]
    columns = [f"S({h:g} months)" for h in bundle_meta["horizons_months"]]
    assert bundle_meta["max_follow_up_months"] == pytest.approx(generic_survival["max_time"])
    assert set(columns + ["median_months", "months_past_follow_up"]) <= set(rows[0])
    for row in rows:
        s = [float(row[c]) for c in columns]
        assert all(0 <= v <= 1 for v in s) and s == sorted(s, reverse=True)  # S(t) falls with t
        past = float(row["months"]) > generic_survival["max_time"]
        assert row["months_past_follow_up"] == ("yes" if past else "no")
    risks = [float(r["risk"]) for r in rows]  # higher risk, lower survival at the first horizon
    first = [float(r[columns[0]]) for r in rows]
    assert np.corrcoef(risks, first)[0, 1] < -0.99


def test_a_failing_explanation_never_fails_the_case(task2_run, tmp_path, monkeypatch, caplog):
    import chimera_surv.explain

    def broken(*_args, **_kwargs):
        raise RuntimeError("drawing exploded")

    monkeypatch.setattr(chimera_surv.explain, "explain_case", broken)
    caplog.set_level(logging.INFO)
    out = tmp_path / "out"
    assert inference.main(["--input", str(task2_run["case"]), "--output", str(out), "--model",
                           str(task2_run["model"]), "--explain", str(tmp_path / "explain")]) == 0
    assert 0.0 <= float((out / "brs-probability.json").read_text()) <= 1.0
    assert "EXPLAIN failed (the prediction is unaffected): RuntimeError: drawing exploded" in caplog.text
    assert "DEGRADED" not in caplog.text.split("EXPLAIN failed")[1].split("\n")[0]


def test_the_render_check_catches_a_broken_image_and_a_script_error(tmp_path):
    from chimera_surv.htmlpage import page

    bad = tmp_path / "bad.html"
    bad.write_text(page("broken", '<h2>One</h2><img alt="nothing" src="data:image/png;base64,AAAA">'
                                  '<figure><figcaption>no image</figcaption></figure>'
                                  '<div style="width:3000px">too wide</div><script>nosuch()</script>'))
    check, console, _ = render(bad, tmp_path, height=300)
    assert check["images"] == 1 and check["broken"] == ["nothing"] and check["empty_figures"] == 1
    assert check["sections"] == ["One"] and check["page_overflows"] and any("too wide" in o for o in check["overflow"])
    assert any("nosuch is not defined" in line for line in console)


def test_survival_figures_separate_groups_and_calibrate_a_true_model(tmp_path, monkeypatch):
    from train.report import figures as rf

    monkeypatch.setattr(rf, "DPI", 100)  # the numbers are what is checked here; 300 dpi is the report's

    rng = np.random.default_rng(0)
    n = 300
    risk = rng.normal(size=n)
    event_time = rng.exponential(30.0 * np.exp(-risk))  # the true hazard is exp(risk)
    censor = rng.uniform(10, 80, size=n)
    time, event = np.minimum(event_time, censor), (event_time <= censor).astype(int)
    p = rf.km_by_risk_group(time, event, risk, tmp_path / "km.png", "simulated")
    assert p < 1e-6 and (tmp_path / "km.png").stat().st_size > 10_000
    rows = rf.calibration_at_horizons(time, event, risk, [12.0, 24.0], tmp_path / "cal.png")
    assert len(rows) == 6
    for row in rows:
        assert abs(row["predicted"] - row["observed"]) < 0.12, row
        assert row["ci95"][0] <= row["observed"] <= row["ci95"][1]
    scrambled = rf.km_by_risk_group(time, event, rng.permutation(risk), tmp_path / "km2.png", "scrambled")
    assert scrambled > 1e-3


def test_cv_headline_averages_every_repeat():
    from train.report import cv_summary

    rng = np.random.default_rng(1)
    n = 40
    data = SimpleNamespace(event=rng.integers(0, 2, n), time=rng.uniform(1, 50, n), label=None)
    ctx = SimpleNamespace(data=data, survival=True, config={"protocol": {"bootstrap": 10}})
    cv = []
    for repeat in (0, 1):
        order = rng.permutation(n)
        for fold in (0, 1):
            test = sorted(order[fold::2].tolist())
            # repeat 1's risks are pure noise: the headline must move when repeat 1 is included
            risk = -data.time[test] if repeat == 0 else rng.normal(size=len(test))
            cv.append({"arch": "model", "repeat": repeat, "fold": fold, "split": f"r{repeat}f{fold}", "test": test,
                       "risk": risk.tolist(), "metric": float(fold + repeat), "best_epoch": 1,
                       "inner_val_metric": 0.5, "modalities": ["clinical"]})
    row = cv_summary(ctx, cv, [])["architectures"]["model"]
    assert row["fold_mean"] == pytest.approx(1.0) and row["n_folds"] == 4 and row["n_repeats"] == 2
    values = [p["value"] for p in row["pooled"]]
    assert values[0] > 0.7 and row["pooled_mean"] == pytest.approx(np.mean(values))
    assert row["pooled_mean"] < values[0]


def test_the_report_words_follow_the_stopping_rule():
    """Under inner_cv the members' held-out fold is unseen, so the report must not call their OOF figure optimistic."""
    from train.report.sections import oof_caveat as _oof_caveat
    from train.report.sections import stopping_words as _stopping_words

    holdout, inner = {"ensemble": {"stopping": "holdout"}}, {"ensemble": {"stopping": "inner_cv"}}
    classical = {"ensemble": {"stopping": "holdout", "family": "classical"}}
    assert "no early stopping" in _stopping_words(classical) and "optimistic" not in _oof_caveat(classical)
    assert "committee" not in _stopping_words(classical)  # a record without cv_model: no claim either way
    for cv_model, words in (("committee", "committee of the models"), ("refit", "one model refitted")):
        said = _stopping_words({"ensemble": {**classical["ensemble"], "cv_model": cv_model}})
        assert words in said and f"cv_model: {cv_model}" in said
    assert "optimistic" in _oof_caveat(holdout) and "optimistic" not in _oof_caveat(inner)
    assert "inner split" in _stopping_words(holdout) and "inner cross-validation" in _stopping_words(inner)


def test_a_report_whose_members_ignore_the_slides_says_why_it_has_no_heatmaps():
    from train.report.heatmaps import heatmaps_note

    note = heatmaps_note([{"modalities": ["clinical"]}, {"modalities": ["clinical"]}])
    assert "none of the exported members uses the slides" in note and "clinical" in note
    assert "could be drawn" in heatmaps_note([{"modalities": ["wsi", "clinical"]}])



def test_the_clinical_only_comparator_is_never_the_row_itself():
    from train.report.numbers import clinical_beside

    rows = [{"arch": "model", "split": "3A->3B", "modalities": ["clinical"], "value": 0.604},
            {"arch": "deep", "split": "3A->3B", "modalities": ["wsi", "clinical"], "value": 0.55},
            {"arch": "model", "split": "3B->3A", "modalities": ["clinical"], "value": 0.61},
            {"arch": "clinical", "split": "3B->3A", "modalities": ["clinical"], "value": 0.487}]
    clinical_beside(rows)
    assert rows[0]["clinical_only"] is None  # no other clinical-only model on that split: a dash, not itself
    assert rows[1]["clinical_only"] == {"arch": "model", "value": 0.604}
    assert rows[2]["clinical_only"] == {"arch": "clinical", "value": 0.487}
    assert rows[3]["clinical_only"] == {"arch": "model", "value": 0.61}


def test_modalities_and_spreads_say_what_is_true():
    from train.report.numbers import modality_label
    from train.report.sections import spread

    assert modality_label([["clinical"], ["clinical"]]) == "clinical"
    assert modality_label([["clinical"], ["wsi", "clinical"], ["wsi", "clinical"]]) == \
        "clinical (1 of 3 folds), wsi+clinical (2 of 3 folds)"
    assert spread(0.61, 0.0, 1) == "0.610 (one value)" and spread(0.61, 0.02, 4) == "0.610 ± 0.020"


def test_calibration_horizons_are_distinct_event_months():
    from train.report.numbers import distinct_horizons

    # follow-up plateaus at 40 months (most censored there): follow-up quantiles would repeat one KM value
    time = np.array([1, 2, 3, 40, 40, 40, 40, 40.0])
    event = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    assert distinct_horizons(None, time, event) == [1.0, 2.0, 3.0]
    assert distinct_horizons([12, 12, 24], time, event) == [12.0, 24.0]
    many = np.arange(1, 100.0)
    assert distinct_horizons(None, many, np.ones(99)) == [25.0, 50.0, 75.0]


def test_heatmap_scale_is_absolute_with_a_noise_floor():
    from chimera_surv import explain

    n = 200
    uniform = explain.display_values(np.full(n, 1 / n), "attention")
    assert np.allclose(uniform, 1.0)  # an even share is 1×, whatever the slide
    stands, text = explain.map_summary(uniform * np.linspace(0.9, 1.1, n), "attention")
    assert not stands and text.startswith("no region stands out")
    peaked = np.full(n, 0.5 / (n - 5))
    peaked[:5] = 0.1
    stands, text = explain.map_summary(explain.display_values(peaked, "attention"), "attention")
    assert stands and "5 patches at 1.5× or more" in text
    # the case: an occlusion range of -0.017 to +0.004 SD is negligible
    delta = np.linspace(-0.004, 0.017, 50)  # risk without the patch - with it
    stands, text = explain.map_summary(explain.display_values(delta, "occlusion"), "occlusion")
    assert not stands and "less than 0.05 SD" in text and "SD of the risk" in text
    stands, text = explain.map_summary(explain.display_values(np.r_[delta, -0.3], "occlusion"), "occlusion")
    assert stands and text.startswith("1 patch raises the risk")


def test_a_slide_with_too_few_patches_gets_a_sentence(tmp_path):
    from chimera_surv import explain

    slide = SimpleNamespace(index=0, wsi=tmp_path / "tiny.tif", name="tiny.tif")
    coords = np.array([[0, 0, 0], [0, 224, 0]])
    drawn = explain.case_heatmaps([slide], coords, np.array([0.6, 0.4]), 112.0, tmp_path, "c1")
    assert drawn == [{"slide": "tiny.tif", "file": None, "stands_out": False,
                      "summary": "tiny.tif: only 2 tissue patch(es), too few for a map (at least 4 needed)"}]
    assert not list(tmp_path.glob("*.png"))


def test_demo_heatmap_line_counts_drawn_maps_apart_from_sentence_only_slides(tmp_path):
    """A slide described in a sentence (`file: None`) is not counted as a map in the demo's summary line."""
    import json

    from train.demo import _heatmap_words

    path = tmp_path / "report.json"
    path.write_text(json.dumps({"heatmaps": [{"kind": "attention", "file": "a.png"},
                                             {"kind": "attention", "file": None},
                                             {"kind": "occlusion", "file": None}]}))
    words = _heatmap_words(path)
    assert words.startswith("1 attention maps of out-of-fold patients")
    assert "occlusion" not in words and "2 slide(s) described in a sentence" in words


def test_the_demo_summary_names_what_each_member_chose_once_per_split(tmp_path):
    """`make demo` prints the exported model beside each task's score: auto's choices counted per member split (a
    chosen network's seed members share a split and count once)."""
    import json

    from train.demo import chosen_words

    members = [{"name": "m0", "split": "r0f0"}, {"name": "m0s1", "split": "r0f0"}, {"name": "m1", "split": "r0f1"},
               {"name": "m2", "split": "r0f2"}]
    meta = {"members": members, "auto_member_choices": ["network:abmil", "network:abmil", "coxnet", "network:abmil"]}
    (tmp_path / "bundle.json").write_text(json.dumps({"meta": meta}))
    assert chosen_words(tmp_path) == "auto → network:abmil ×2, coxnet ×1"
    (tmp_path / "bundle.json").write_text(json.dumps({"meta": {"members": members[:2]}}))
    assert chosen_words(tmp_path) == "2 configured member(s)"


def test_the_demo_ratio_interval_covers_the_ratio_and_narrows_with_more_cases():
    """The demo prints held-out / oracle with a paired bootstrap interval: it holds the point ratio, a perfect
    predictor's interval is exactly 1, and 300 cases give a narrower interval than 30."""
    import numpy as np

    from train.demo import ratio_ci, score

    rng = np.random.default_rng(0)

    def cohort(n: int):
        latent = rng.normal(size=n)
        t = rng.exponential(20 * np.exp(-latent))
        truth = [{"latent_risk": float(z), "time": float(ti), "event": bool(rng.random() < 0.7)}
                 for z, ti in zip(latent, t, strict=True)]
        months = list(50 * np.exp(-(latent + rng.normal(scale=0.8, size=n))))  # a noisy predictor, in months
        return truth, months

    truth, months = cohort(30)
    metric, oracle, _ = score(1, truth, months)
    low, high = ratio_ci(1, truth, months, n_boot=300)
    assert low <= metric / oracle <= high and high - low > 0.05
    perfect = [float(50 * np.exp(-t["latent_risk"])) for t in truth]
    assert ratio_ci(1, truth, perfect, n_boot=100) == (1.0, 1.0)
    big_truth, big_months = cohort(300)
    big_low, big_high = ratio_ci(1, big_truth, big_months, n_boot=300)
    assert big_high - big_low < 0.6 * (high - low)


def test_the_evaluation_says_when_the_model_loses_to_the_km_curve() -> None:
    """A new user read "the model should be lower" next to a model that was higher, with nothing pointing it out."""
    from train.report.sections import evaluation

    def cells(ibs: float) -> str:
        _, blocks = evaluation({"evaluation": {"harrell_c": 0.66, "uno_c": 0.64, "td_auc": {"1": 0.7, "12": 0.68},
                                               "ibs": ibs, "ibs_km": 0.213, "n": 154}})
        return json.dumps([getattr(b, "rows", None) for b in blocks])

    assert "Here it is not (0.222 against 0.213)" in cells(0.222)
    assert "Here it is not" not in cells(0.200)
    assert 'AUC at 1 month"' in cells(0.2) and "AUC at 12 months" in cells(0.2)
