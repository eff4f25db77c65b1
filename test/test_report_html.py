"""The training report and an explained case, as people see them: figures drawn from real runs, every figure
rendered in headless Chromium (non-blank screenshot, every <img> with pixels, no console error), slide heatmaps
from training (out-of-fold patients) and from `inference.py --explain`, which never changes or fails the case:
attention for networks, the risk change when each patch is left out (occlusion) for classical models."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from browser import non_blank, render

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
    write_training_cohort(synthetic.make_cohort(2, 40, 0, demo._options(2, "training")), cohort, workers=1)
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


def test_training_report_renders_every_figure_in_chromium(task2_run, tmp_path):
    report = task2_run["report"]
    summary = json.loads((report / "report.json").read_text())
    assert set(summary["figures"]) == {"training_curves", "roc", "reliability", "f1_threshold"}
    assert summary["model_choice"]["chosen"] == "model" and summary["model_choice"]["why"]
    heatmaps = summary["heatmaps"]
    assert len(heatmaps) >= 2 and all((report / h["file"]).stat().st_size > 5000 for h in heatmaps)
    assert {h["kind"] for h in heatmaps} == {"attention"}  # networks keep their attention maps
    assert heatmaps[0]["risk_pct"] < 50 < heatmaps[-1]["risk_pct"]  # both ends of the risk scale
    check, console, shot = render(report / "report.html", tmp_path)
    assert check == {"images": len(summary["figures"]) + len(heatmaps), "broken": []}
    assert console == []
    assert non_blank(shot)


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
    check, console, shot = render(pages[0], tmp_path, height=1400)
    assert check == {"images": len(pngs), "broken": []} and console == [] and non_blank(shot)


def test_a_classical_model_gets_occlusion_maps_in_the_report_and_from_explain(task2_classical, tmp_path):
    """Classical members pool the bag without attention: the report and --explain draw the risk change when each
    patch is left out instead, and both pages render in Chromium with every heatmap."""
    report = task2_classical["report"]
    summary = json.loads((report / "report.json").read_text())
    heatmaps = summary["heatmaps"]
    assert "heatmaps_error" not in summary
    assert len(heatmaps) >= 2 and {h["kind"] for h in heatmaps} == {"occlusion"}
    assert all(h["file"].endswith("_occlusion.png") and (report / h["file"]).stat().st_size > 5000
               for h in heatmaps)
    assert heatmaps[0]["risk_pct"] < 50 < heatmaps[-1]["risk_pct"]
    html = (report / "report.html").read_text()
    assert "risk change when a patch is left out" in html and "the patch raised it" in html
    check, console, shot = render(report / "report.html", tmp_path)
    assert check == {"images": len(summary["figures"]) + len(heatmaps), "broken": []}
    assert console == [] and non_blank(shot)

    pages, pngs = explain_once(task2_classical, tmp_path, "occlusion")
    assert len(pages) == 1 and len(pngs) >= 1 and not list((tmp_path / "explain").glob("*_attention.png"))
    assert "Risk change when the patch is left out" in pages[0].read_text()
    check, console, shot = render(pages[0], tmp_path, height=1600)
    assert check == {"images": len(pngs), "broken": []} and console == [] and non_blank(shot)


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
    bad.write_text(page("broken", '<img alt="nothing" src="data:image/png;base64,AAAA"><script>nosuch()</script>'))
    check, console, _ = render(bad, tmp_path, height=300)
    assert check == {"images": 1, "broken": ["nothing"]}
    assert any("nosuch is not defined" in line for line in console)


def test_survival_figures_separate_groups_and_calibrate_a_true_model(tmp_path, monkeypatch):
    from train import report_figures as rf

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
    from train.report_html import _oof_caveat, _stopping_words

    holdout, inner = {"ensemble": {"stopping": "holdout"}}, {"ensemble": {"stopping": "inner_cv"}}
    assert "optimistic" in _oof_caveat(holdout) and "optimistic" not in _oof_caveat(inner)
    assert "inner split" in _stopping_words(holdout) and "inner cross-validation" in _stopping_words(inner)


def test_a_report_whose_members_ignore_the_slides_says_why_it_has_no_heatmaps():
    from train.report_heatmaps import heatmaps_note

    note = heatmaps_note([{"modalities": ["clinical"]}, {"modalities": ["clinical"]}])
    assert "none of the exported members uses the slides" in note and "clinical" in note
    assert "could be drawn" in heatmaps_note([{"modalities": ["wsi", "clinical"]}])
