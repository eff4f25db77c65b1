"""What the report says about `auto`: the exported choice, its inner scores, and the CV folds' choices."""

from __future__ import annotations

from typing import Any


def auto_report(members: list[dict[str, Any]], cv: list[dict[str, Any]]) -> dict[str, Any]:
    """The exported choice with its inner scores, and how often each option won inside the CV folds."""
    folds = [r["auto"]["chosen"] for r in cv if r.get("arch") == "model" and r.get("auto")]
    mine = [r["auto"]["chosen"] for r in members if r.get("auto")]
    return {"exported": members[0]["auto"], "member_choices": {c: mine.count(c) for c in sorted(set(mine))},
            "cv_choices": {c: folds.count(c) for c in sorted(set(folds))}}


def auto_markdown(section: dict[str, Any]) -> str:
    exported = section["exported"]
    inner = ("repeated stratified k-fold pooled with leave-one-cohort-out" if exported["inner"] == "kfold+loco"
             else "repeated stratified k-fold")
    lines = ["## Automatic model choice (`model: auto`)", "",
             (f"Exported (first member): **{exported['chosen']}**, chosen on {exported['n_inner_splits']} inner "
              f"{inner} splits of the member's training part (no reported fold is involved); rule: "
              f"{exported.get('rule')}. "
              "Settings per family: " + ", ".join(f"{k} {v}" for k, v in exported["settings"].items()) + "."), "",
             "| option | mean inner score |", "|---|---|"]
    for name, value in sorted(exported["scores"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name}{' (chosen)' if name == exported['chosen'] else ''} | {value:.4f} |")
    if exported.get("rna_within_scores"):
        tried = ", ".join(f"{k} {v:.4f}" for k, v in exported["rna_within_scores"].items())
        lines += ["", (f"RNA within-sample transform: **{exported['rna_within']}** (best inner leave-one-cohort-out "
                       f"score per transform: {tried}; another transform replaces the configured one only when its "
                       "mean paired gain over the held-out cohorts exceeds one standard error).")]
    if section.get("member_choices"):
        counts = ", ".join(f"{k} × {v}" for k, v in section["member_choices"].items())
        lines += ["", ("Each exported member chose on its own training part's inner splits (so its held-out risks, "
                       f"which fit the calibration, come from a choice that never saw those patients): {counts}. "
                       "The table above is the first member's.")]
    if section.get("cv_choices"):
        counts = ", ".join(f"{k} × {v}" for k, v in section["cv_choices"].items())
        lines += ["", f"Inside the CV (each outer training part chose on its own inner splits): {counts}."]
    return "\n".join(lines) + "\n"
