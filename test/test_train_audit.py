"""The `audit` step of train/ on a tiny synthetic cohort (no slides): InterSHAP JSON per ensemble member,
efficiency from the saved values, the training fold as background, the report section, resumability, and
zero interaction for a late-fusion model trained through the same pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from chimera_surv import synthetic
from chimera_surv.make_cases import write_training_cohort
from train.__main__ import Run, main
from train.config import load_config

TINY_TRAIN = {"epochs": 4, "batch_size": 16, "lr": 0.01, "weight_decay": 1e-4, "patience": 3, "min_epochs": 2,
              "max_patches": 8, "modality_dropout": {"rna": 0.2}, "seeds": 1}
ENCODERS = {"clinical": {"name": "mlp", "hidden": [8]}, "rna": {"name": "mlp", "hidden": [8]}}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("audit_cohort")
    options = synthetic.CohortOptions(with_images=False, genes=tuple(synthetic.gene_panel(30)))
    write_training_cohort(synthetic.make_cohort(3, 36, 0, options), root, workers=1)
    return root


def _config(cohort: Path, tmp: Path, fusion: dict, **extra) -> Path:
    raw = {"task": 3, "seed": 0, "cohort": {"root": str(cohort)}, "modalities": ["clinical", "rna"],
           "genes": "from_cohort", "work_dir": str(tmp / "work"), "out": str(tmp / "bundle"),
           "preprocess": {"rna": {"log1p": True, "top_k": 20, "n_components": 4}},
           "protocol": {"folds": 3, "repeats": 1, "inner_val": 0.25, "cohort_holdout": False, "bootstrap": 10,
                        "members": 3},
           "train": TINY_TRAIN, "model": {"encoders": ENCODERS, "fusion": fusion}, **extra}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _docs(work: Path) -> list[dict]:
    return [json.loads((work / "report" / "audit" / f"audit_member{k}.json").read_text()) for k in range(3)]


def _check_percentages(doc: dict) -> None:
    for masker in doc["maskers"].values():
        for est in masker["estimators"].values():
            values = [est["interaction_pct"], *est["shares_pct"].values(), *est.get("per_patient_pct", [])]
            assert np.all(np.isfinite(values)) and min(values) >= 0.0 and max(values) <= 100.0 + 1e-9


def test_audit_step_json_efficiency_background_report_and_resume(cohort, tmp_path):
    config = _config(cohort, tmp_path, {"name": "concat_mlp", "hidden": [8], "dropout": 0.0})
    assert main([str(config), "--steps", "fit", "cv", "report", "audit"]) == 0
    work = tmp_path / "work"
    members = [json.loads((work / "members" / f"r0f{k}.json").read_text()) for k in range(3)]
    docs = _docs(work)
    for doc, member in zip(docs, members):
        assert doc["split"] == member["split"] and doc["output"] == "risk"
        assert set(doc["maskers"]) == {"mean", "shuffle"}
        held_out = member["oof"]
        assert doc["n_explained"] == len(held_out) and doc["n_explained"] + doc["n_background"] == 36
        assert doc["maskers"]["shuffle"]["masker"]["k"] == min(50, doc["n_background"])
        for name, masker in doc["maskers"].items():
            pp = masker["per_patient"]
            v, phi, mat = (np.asarray(pp[k]) for k in ("coalition_values", "shapley", "matrix"))
            assert v.shape == (len(held_out), 4) and mat.shape == (len(held_out), 2, 2)
            gap = v[:, -1] - v[:, 0]  # v(all) - v(none), per patient
            assert np.abs(phi.sum(1) - gap).max() < 1e-9 and np.abs(mat.sum((1, 2)) - gap).max() < 1e-9
            assert np.abs(gap).max() > 1e-6  # the game is not trivially constant
            assert (work / "report" / "audit" / masker["figure"]).stat().st_size > 1000
        _check_percentages(doc)

    # Explained = the member's held-out fold; the mean masker's v(none) = f(TRAINING-fold mean embedding).
    from chimera_surv.models import build_network
    from train.data import encode_fold
    from train.fit import collate
    from train.protocol import member_splits, member_state

    ctx = Run(load_config(config)).context()
    split = member_splits(ctx)[0]
    assert docs[0]["maskers"]["mean"]["per_patient"]["patient_ids"] == [ctx.data.case_ids[i] for i in split.test]
    net = build_network(members[0]["network"])
    net.load_state_dict(member_state(ctx, members[0]))
    net.eval()
    enc = encode_fold(ctx.data, split.train, ctx.schema, ctx.config)
    with torch.no_grad():
        batch, _ = collate(enc, ctx.data, list(split.train), ["clinical", "rna"], None, 8)
        emb, pres = net.embed(batch), net.present(batch)
        mean = {m: emb[m][pres[m]].double().mean(0, keepdim=True) for m in emb}
        v_none = float(net.double().fuse_and_head(mean)["risk"][0])
    both = [j for j, i in enumerate(split.test) if enc.present["clinical"][i] and enc.present["rna"][i]]
    assert both
    v0 = np.asarray(docs[0]["maskers"]["mean"]["per_patient"]["coalition_values"])[both, 0]
    assert np.abs(v0 - v_none).max() < 1e-5  # float32 embeddings of the same patients, summed in another order

    # Report section: JSON and markdown, per masker, mean ± SD over members.
    report = json.loads((work / "report" / "report.json").read_text())
    section = report["intershap_audit"]
    assert section["members"] == ["member0", "member1", "member2"] and set(section["maskers"]) == {"mean", "shuffle"}
    for name, masker in section["maskers"].items():
        for est in ("orig_mean_abs", "e5_patient_mean"):
            stat = masker[est]["interaction_pct"]
            per_member = [d["maskers"][name]["estimators"][est]["interaction_pct"] for d in docs]
            assert 0.0 <= stat["mean"] <= 100.0 and len(stat["values"]) == 3
            assert (stat["mean"], stat["sd"]) == pytest.approx((np.mean(per_member), np.std(per_member)))
    text = (work / "report" / "report.md").read_text()
    assert "## InterSHAP audit" in text and "| shuffle | e5_patient_mean |" in text
    assert text.count("## InterSHAP audit") == 1

    # Resume: `python -m train audit CONFIG` reuses every member's audit; new audit settings redo only the audit.
    jsons = sorted((work / "report" / "audit").glob("audit_member*.json"))
    stamps = [p.stat().st_mtime_ns for p in jsons]
    weights = [p.stat().st_mtime_ns for p in sorted((work / "members").glob("*.safetensors"))]
    assert main(["audit", str(config)]) == 0
    assert [p.stat().st_mtime_ns for p in jsons] == stamps
    assert (work / "report" / "report.md").read_text().count("## InterSHAP audit") == 1
    raw = yaml.safe_load(config.read_text())
    raw["audit"] = {"maskers": ["mean"]}
    config.write_text(yaml.safe_dump(raw))
    assert main([str(config), "--steps", "audit"]) == 0
    assert all(set(d["maskers"]) == {"mean"} for d in _docs(work))
    assert [p.stat().st_mtime_ns for p in sorted((work / "members").glob("*.safetensors"))] == weights
    assert "| shuffle |" not in (work / "report" / "report.md").read_text()


def test_late_fusion_has_zero_intershap_through_train(cohort, tmp_path):
    config = _config(cohort, tmp_path, {"name": "late_sum", "hidden": [8]})
    assert main([str(config), "--steps", "fit", "audit"]) == 0
    for doc in _docs(tmp_path / "work"):
        _check_percentages(doc)
        for masker in doc["maskers"].values():
            for est in masker["estimators"].values():
                assert abs(est["interaction_pct"]) < 1e-9, est["name"]
            shares = masker["estimators"]["orig_mean_abs"]["shares_pct"]
            assert shares["clinical"] > 0.1 and shares["rna"] > 0.1  # both modalities used: not a trivial zero
    summary = json.loads((tmp_path / "work" / "report" / "audit" / "summary.json").read_text())
    assert summary["maskers"]["mean"]["orig_mean_abs"]["interaction_pct"]["mean"] < 1e-9
    assert not (tmp_path / "work" / "report" / "report.json").exists()  # no report yet: the section waits


def test_summary_and_figure_carry_the_harsanyi_orders(tmp_path):
    """The member docs' Harsanyi dividends reach the summary (mean ± SD by coalition order) and the report figure."""
    from train.audit import markdown, summarise
    from train.report.figures import intershap_figure

    def doc(name, three_way):
        est = {"interaction_pct": 10.0, "shares_pct": {"wsi": 30.0, "clinical": 30.0, "rna": 30.0, "interaction": 10.0}}
        return {"name": name, "modalities": ["wsi", "clinical", "rna"], "output": "risk", "n_explained": 5,
                "maskers": {"mean": {"estimators": {"orig_mean_abs": est},
                                     "harsanyi": {"order": 3, "by_order_pct": {"1": 100.0 - 5 - three_way, "2": 5.0,
                                                                                "3": three_way}}}}}

    summary = summarise([doc("m0", 20.0), doc("m1", 40.0)])
    assert summary["harsanyi"]["mean"]["by_order_pct"]["3"]["mean"] == pytest.approx(30.0)
    assert summary["harsanyi"]["mean"]["by_order_pct"]["3"]["sd"] == pytest.approx(10.0)
    assert "order 3: 30.0 ± 10.0 %" in markdown(summary)
    assert (tmp_path / intershap_figure(summary, tmp_path / "f.png")).stat().st_size > 1000
