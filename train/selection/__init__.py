"""`model: auto` and single classical families: selection by nested inner CV, refit, and the exported members.

Read in this order: `options` (settings, candidates), `inner` (inner splits, inner out-of-fold risks), `select`
(the rule), `refit` (the chosen parts on a whole training part; the CV and member hooks), `record` (the report).
Selection never sees the reported fold: everything is decided on the inner splits of a training part.
"""

from train.selection.inner import Inner, inner_splits, is_null, run_inner
from train.selection.options import (
    AUTO_DEFAULTS,
    auto_settings,
    configured_within,
    is_classical,
    with_rna_within,
)
from train.selection.record import auto_report
from train.selection.refit import (
    _choice_summary,
    classical_member,
    model_rows,
    predict_idx,
    refit,
    run_classical_split,
)
from train.selection.select import best_setting, choose, rule_text, select, with_option

__all__ = ["AUTO_DEFAULTS", "Inner", "_choice_summary", "auto_report", "auto_settings",
           "best_setting", "choose", "classical_member", "configured_within", "inner_splits", "is_classical",
           "is_null", "model_rows", "predict_idx", "refit", "rule_text", "run_classical_split", "run_inner", "select",
           "with_option", "with_rna_within"]
