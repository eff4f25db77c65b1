"""Held-out permutation importance for tree models (train/report/importance.py): the variable that carries the
planted risk ranks first, a variable with no signal sits near zero, and a model without trees gets no table."""

from __future__ import annotations

from test_auto import _ctx

from train.report.importance import permutation_importance, tree_family
from train.report.sections import tree_importance


def _member(family, weight=1.0):
    return {"kind": "classical", "modalities": ["clinical"], "network": {"parts": [{"family": family, "weight": weight}]}}


def test_tree_family_is_the_heaviest_tree_part_or_none():
    assert tree_family([_member("ridge")]) is None
    assert tree_family([_member("rsf", 0.2), _member("gbsa", 0.5)]) == "gbsa"
    assert tree_family([{"kind": "network", "modalities": ["clinical"]}]) is None


def test_planted_variable_ranks_first_and_noise_sits_near_zero(tmp_path):
    ctx = _ctx(tmp_path, "auto")  # age = 65 + 8 z; the event time falls with z; instillations are pure noise
    found = permutation_importance(ctx, [_member("rsf")])
    assert found["family"] == "rsf" and found["metric"] == "Harrell's C"
    terms = [r["term"] for r in found["rows"]]
    assert terms[0] == "age"
    noise = next(r for r in found["rows"] if r["term"].startswith("no_instillations"))
    assert found["rows"][0]["drop"] > 0.03 and abs(noise["drop"]) < found["rows"][0]["drop"] / 2
    title, blocks = tree_importance({"tree_importance": found})
    assert "permutation importance" in title and len(blocks) == 2
    assert permutation_importance(ctx, [_member("coxnet")]) is None
