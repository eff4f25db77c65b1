"""What training treated as missing, per clinical feature: counted, said, kept in report.json.

Why: a schema range that is too narrow (or a new category spelling) turns real values into "missing, imputed"
without a word; at inference the same thing is a DEGRADED line. Training now prints one line per feature, on the
console and in `<work>/train.log`, and the report keeps the counts (`clinical_missing` in report.json, drawn as
the section "Clinical values treated as missing" of report.md and report.html).
How a missing value is treated is the ClinicalEncoder's (chimera_surv/preprocess.py), fitted per fold on the
training patients: the value quoted here is the whole cohort's, for orientation.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

KINDS = ("out_of_range", "unknown", "unparsable", "missing", "absent")
WORDS = {"out_of_range": "out of range", "unknown": "unknown value", "unparsable": "unparsable",
         "missing": "marked missing", "absent": "absent"}


def summarise(records: list[Any], schema: Any) -> list[dict[str, Any]]:
    """One entry per schema feature: how many patients' values were usable, and why the others were not.
    A patient without clinical data (record None) counts as absent for every feature."""
    raw = schema.raw.get("features", {})
    rows = []
    for spec in schema.features:
        counts = dict.fromkeys(KINDS, 0)
        for record in records:
            kind = "absent" if record is None else getattr(record, "problems", {}).get(spec.key)
            if kind is not None:
                counts[kind if kind in counts else "unparsable"] += 1
        usable = [r.values.get(name) for r in records if r is not None and spec.key not in r.problems
                  for name, _ in spec.columns()]
        info = raw.get(spec.key, {}) if isinstance(raw.get(spec.key), dict) else {}
        rows.append({"feature": spec.key, "type": spec.type, "n": len(records),
                     "usable": len(records) - sum(counts.values()), **counts,
                     "range": list(spec.range) if spec.range is not None else None, "unit": info.get("unit"),
                     "treated": _treatment(spec.type, usable, info.get("unit"))})
    return rows


def _treatment(kind: str, usable: list[Any], unit: str | None) -> str:
    numbers = np.array([v for v in usable if isinstance(v, (int, float)) and np.isfinite(v)], dtype=np.float64)
    if kind in ("numeric", "ordinal"):
        fill = f"{float(np.median(numbers)):.4g}{' ' + unit if unit else ''}" if numbers.size else "0 (no value)"
        return f"imputed with the training median (whole cohort: {fill}) plus a missing indicator"
    if kind in ("binary", "flags"):
        rate = f"{float(numbers.mean()):.2f}" if numbers.size else "0 (no value)"
        return f"imputed with the training rate (whole cohort: {rate}) plus a missing indicator"
    return "encoded as the 'unknown/missing' category"


def line(row: dict[str, Any]) -> str:
    """`clinical 'age': 521/600 usable; 79 out of range [40, 80] ...; imputed with ...` (one line)."""
    lost = sum(row[k] for k in KINDS)
    head = f"clinical {row['feature']!r}: {row['usable']}/{row['n']} patients usable"
    if not lost:
        return head
    parts = []
    for kind in KINDS:
        if row[kind]:
            extra = f" {row['range']}{' ' + row['unit'] if row['unit'] else ''}" \
                if kind == "out_of_range" and row["range"] else ""
            parts.append(f"{row[kind]} {WORDS[kind]}{extra}")
    return f"{head}; {', '.join(parts)}: {row['treated']}"


def report(records: list[Any], schema: Any, log: logging.Logger) -> list[dict[str, Any]]:
    """Summarise, print one line per feature (console) and log it (train.log); returns the rows for report.json."""
    rows = summarise(records, schema)
    for row in rows:
        text = line(row)
        log.info("%s", text)
        print(text)
    return rows
