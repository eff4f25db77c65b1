"""The training report: report.json, report.md and one self-contained report.html per training run.

Layout: `build` runs the step (numbers, figures, heatmaps, writing), `numbers` the CV/holdout summaries, `figures`
and `heatmaps` draw, `sections` builds each section for both formats, `render` assembles the two pages.
"""

from train.report.build import attach_anchors, attach_audit, cv_summary, write_report

__all__ = ["attach_anchors", "attach_audit", "cv_summary", "write_report"]
