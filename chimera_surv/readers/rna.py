"""RNA-seq JSON ({gene symbol: value}) → a float32 vector in a fixed gene order, NaN where unusable.

Why by name: the JSON key order is not guaranteed (chimera-spec.md §2.4), and the bundle carries the gene list
it was trained on, so a vector is always built from that list. Missing genes stay NaN here; the fitted
RNANormaliser imputes them, so the reader never invents values.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chimera_surv.readers.clinical import parse_number, unwrap_json_object

# The CHIMERA Task 3 gene list, shipped in the repository (resources/README.md names its source). A default for
# training and synthetic data only: at inference the bundle's own gene list is used.
DEV_GENE_ORDER = Path(__file__).resolve().parents[2] / "resources" / "gene_order.json"


@dataclass
class RNAReport:
    """What happened to each expected gene, so a degraded input is visible in the log."""

    n_genes: int = 0
    present: int = 0
    missing: int = 0  # gene absent from the JSON, or null
    nonfinite: int = 0  # NaN / ±inf (numbers or strings such as "NaN")
    nonnumeric: int = 0  # text, booleans, objects, arrays
    coerced: int = 0  # numeric strings that were parsed ("3.1")
    extra: int = 0  # keys that are not in the gene list
    issues: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def fraction_present(self) -> float:
        return self.present / self.n_genes if self.n_genes else 0.0


@dataclass
class RNAVector:
    """Expression values in the order of `genes` (float32, NaN = unusable) and the parse report."""

    values: np.ndarray
    report: RNAReport


def _classify(value: Any) -> tuple[float, str]:
    """(float or NaN, outcome) where outcome is present / missing / nonfinite / nonnumeric / coerced."""
    if value is None:
        return math.nan, "missing"
    if isinstance(value, bool):
        return math.nan, "nonnumeric"
    if isinstance(value, (int, float)):
        if isinstance(value, int) and abs(value) > 10**300:  # float() would raise OverflowError
            return math.nan, "nonfinite"
        number = float(value)
        return (number, "present") if math.isfinite(number) else (math.nan, "nonfinite")
    if isinstance(value, str):
        number = parse_number(value)
        if number is not None:
            return number, "coerced"
        text = value.strip().casefold()
        if text in {"nan", "inf", "+inf", "-inf", "infinity", "-infinity"}:
            return math.nan, "nonfinite"
        return math.nan, "nonnumeric"
    return math.nan, "nonnumeric"


def parse_rna(raw: Any, genes: list[str]) -> RNAVector:
    """The vector for `genes` from a JSON object (or a one-element list of it); never raises on content."""
    report = RNAReport(n_genes=len(genes))
    values = np.full(len(genes), np.nan, dtype=np.float32)
    data, issues = unwrap_json_object(raw, "rna")
    report.issues.extend(issues)
    if data is None:
        report.missing = len(genes)
        return RNAVector(values, report)
    counts = {"present": 0, "missing": 0, "nonfinite": 0, "nonnumeric": 0, "coerced": 0}
    parsed = np.full(len(genes), np.nan, dtype=np.float64)
    for i, gene in enumerate(genes):
        number, outcome = _classify(data.get(gene))
        counts[outcome] += 1
        if outcome in ("present", "coerced"):
            parsed[i] = number
    too_large = np.abs(parsed) > np.finfo(np.float32).max  # finite in float64, inf in float32
    parsed[too_large] = np.nan
    values = parsed.astype(np.float32)
    report.present = counts["present"] + counts["coerced"]
    report.coerced = counts["coerced"]
    report.missing, report.nonfinite, report.nonnumeric = (
        counts["missing"],
        counts["nonfinite"],
        counts["nonnumeric"],
    )
    report.extra = len(data) - sum(1 for gene in genes if gene in data)
    if too_large.any():
        report.nonfinite += int(too_large.sum())
        report.present -= int(too_large.sum())
    for name in ("missing", "nonfinite", "nonnumeric", "extra"):
        count = getattr(report, name)
        if count:
            report.issues.append(
                f"rna: {count} {name} of {len(genes)} genes"
                if name != "extra"
                else f"rna: {count} keys not in the gene list ignored"
            )
    return RNAVector(values, report)


def default_gene_order(path: Path | str | None = None) -> list[str]:
    """The 19,359-gene CHIMERA order, read from resources/gene_order.json (a training default only:
    at inference the bundle's own gene list is used)."""
    path = Path(path) if path is not None else DEV_GENE_ORDER
    if not path.is_file():
        raise FileNotFoundError(f"gene order not found at {path}; pass the bundle's gene list instead")
    genes = json.loads(path.read_text(encoding="utf-8"))
    if (
        not isinstance(genes, list)
        or not all(isinstance(g, str) for g in genes)
        or len(set(genes)) != len(genes)
    ):
        raise ValueError(f"{path} is not a list of unique gene symbols")
    return genes
