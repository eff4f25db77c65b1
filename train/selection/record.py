"""What the report says about `auto`: the exported choice, its inner scores, and the CV folds' choices."""

from __future__ import annotations

from typing import Any


def auto_report(members: list[dict[str, Any]], cv: list[dict[str, Any]]) -> dict[str, Any]:
    """The exported choice with its inner scores, and how often each option won inside the CV folds."""
    folds = [r["auto"]["chosen"] for r in cv if r.get("arch") == "model" and r.get("auto")]
    mine = [r["auto"]["chosen"] for r in members if r.get("auto")]
    return {"exported": members[0]["auto"], "member_choices": {c: mine.count(c) for c in sorted(set(mine))},
            "cv_choices": {c: folds.count(c) for c in sorted(set(folds))}}
