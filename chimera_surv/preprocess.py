"""Fitted, JSON-serialisable preprocessing for the vector modalities (clinical, RNA, MRI/other).

Why here and not sklearn: the bundle must be JSON + safetensors (no pickle), and the state must be fitted
inside a training fold only. Every transform imputes with fitted values, so its output never holds NaN, and a
`to_dict` → `json.dumps` → `from_dict` round trip reproduces the outputs bit for bit (float64 state in JSON).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from chimera_surv.readers.clinical import ClinicalRecord, load_schema

_EPS = 1e-8
UNKNOWN = "__unknown__"


def _as_list(array: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(array, dtype=np.float64).ravel()]


def _finite_or_nan(value: Any) -> float:
    """A value from a record as float, NaN when absent or not a finite number (records may be hand-built)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return math.nan
    value = float(value)
    return value if math.isfinite(value) else math.nan


def _column_stats(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column mean, std (1 where constant/unseen) and median over the finite entries; 0 when none."""
    finite = np.isfinite(matrix)
    count = finite.sum(axis=0)
    safe = np.where(finite, matrix, 0.0)
    mean = np.divide(safe.sum(axis=0), count, out=np.zeros(matrix.shape[1]), where=count > 0)
    var = np.divide(
        np.where(finite, (matrix - mean) ** 2, 0.0).sum(axis=0),
        count,
        out=np.zeros(matrix.shape[1]),
        where=count > 0,
    )
    std = np.sqrt(var)
    std = np.where(std > _EPS, std, 1.0)
    median = np.zeros(matrix.shape[1])
    for j in np.flatnonzero(count > 0):
        median[j] = float(np.median(matrix[finite[:, j], j]))
    return mean, std, median


def _check_kind(data: Mapping[str, Any], kind: str) -> None:
    if data.get("kind") != kind:
        raise ValueError(f"expected a serialised {kind}, got kind={data.get('kind')!r}")



def finite_float32(z: np.ndarray, clip: float | None) -> np.ndarray:
    """Clip to ±clip and replace what is still not finite, so a transform never hands NaN to a network."""
    if clip is not None:
        z = np.clip(z, -clip, clip)
    big = clip if clip is not None else 1e6
    return np.nan_to_num(z, nan=0.0, posinf=big, neginf=-big).astype(np.float32)

class ClinicalEncoder:
    """Schema columns → a fixed-width vector.

    numeric / ordinal: median impute, standardise, plus a missing-indicator column;
    binary: 0/1 with the training rate imputed, plus a missing indicator;
    categorical: one-hot over the categories seen in training plus one "unknown/missing" column.
    """

    kind = "clinical_encoder"

    def __init__(self, clip: float = 10.0) -> None:
        self.clip = float(clip)
        self.columns: list[dict[str, Any]] = []

    def fit(self, records: Sequence[ClinicalRecord | Mapping[str, Any]], schema: Any) -> ClinicalEncoder:
        schema = load_schema(schema)
        rows = [_values_of(r) for r in records]
        if not rows:
            raise ValueError("ClinicalEncoder.fit needs at least one record")
        self.columns = []
        for (name, kind), feature_categories in zip(schema.columns(), _categories_per_column(schema)):
            if kind == "categorical":
                seen = {v for v in (row.get(name) for row in rows) if isinstance(v, str)}
                ordered = [c for c in feature_categories if c in seen] + sorted(
                    seen - set(feature_categories)
                )
                self.columns.append({"name": name, "kind": kind, "categories": ordered})
                continue
            values = np.array([[_finite_or_nan(row.get(name))] for row in rows], dtype=np.float64)
            mean, std, median = _column_stats(values)
            if kind == "binary":
                self.columns.append({"name": name, "kind": kind, "fill": float(mean[0])})
            else:
                self.columns.append(
                    {
                        "name": name,
                        "kind": kind,
                        "fill": float(median[0]),
                        "center": float(mean[0]),
                        "scale": float(std[0]),
                    }
                )
        return self

    def feature_names(self) -> list[str]:
        names: list[str] = []
        for col in self._fitted():
            if col["kind"] == "categorical":
                names += [f"{col['name']}={c}" for c in col["categories"]] + [f"{col['name']}={UNKNOWN}"]
            else:
                names += [col["name"], f"{col['name']}__missing"]
        return names

    @property
    def dim(self) -> int:
        return len(self.feature_names())

    def transform(self, records: Sequence[ClinicalRecord | Mapping[str, Any]] | ClinicalRecord) -> np.ndarray:
        """(n, d) float32 for a sequence of records; (d,) for a single ClinicalRecord."""
        if isinstance(records, ClinicalRecord):
            return self.transform([records])[0]
        rows = [_values_of(r) for r in records]
        out = np.zeros((len(rows), self.dim), dtype=np.float64)
        for i, row in enumerate(rows):
            out[i] = self._encode_row(row)
        return np.nan_to_num(out, nan=0.0, posinf=self.clip, neginf=-self.clip).astype(np.float32)

    def _encode_row(self, row: Mapping[str, Any]) -> list[float]:
        encoded: list[float] = []
        for col in self._fitted():
            value = row.get(col["name"])
            if col["kind"] == "categorical":
                hot = [1.0 if isinstance(value, str) and value == c else 0.0 for c in col["categories"]]
                encoded += hot + [0.0 if any(hot) else 1.0]
                continue
            number = _finite_or_nan(value)
            missing = math.isnan(number)
            x = col["fill"] if missing else number
            if col["kind"] != "binary":
                x = min(max((x - col["center"]) / col["scale"], -self.clip), self.clip)
            encoded += [x, 1.0 if missing else 0.0]
        return encoded

    def _fitted(self) -> list[dict[str, Any]]:
        if not self.columns:
            raise RuntimeError("ClinicalEncoder is not fitted")
        return self.columns

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "version": 1,
            "clip": self.clip,
            "columns": [dict(c) for c in self._fitted()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClinicalEncoder:
        _check_kind(data, cls.kind)
        encoder = cls(clip=data.get("clip", 10.0))
        encoder.columns = [dict(c) for c in data["columns"]]
        return encoder


def _values_of(record: ClinicalRecord | Mapping[str, Any] | None) -> Mapping[str, Any]:
    if isinstance(record, ClinicalRecord):
        return record.values if isinstance(record.values, Mapping) else {}
    return record if isinstance(record, Mapping) else {}


def _categories_per_column(schema: Any) -> Iterable[tuple[str, ...]]:
    for feature in schema.features:
        for _ in feature.columns():
            yield feature.categories


WITHIN_SAMPLE = ("none", "rank", "quantile", "standardise")
_ORDER_ONLY = ("rank", "quantile")  # transforms of the order alone: applied to the raw values, log1p skipped


def within_sample(matrix: np.ndarray, kind: str) -> np.ndarray:
    """Each row (one patient) transformed on its own profile only, so nothing depends on other patients.

    Why: a platform's library size and dynamic range change the values of every gene of a sample together; a
    transform fitted to that sample's own profile removes them for a single patient, where standardising a test
    patient's genes on itself (per gene, one value) would remove the signal. `rank`: (average rank - 0.5) /
    G_finite in (0, 1); `quantile`: the normal scores of those ranks (a within-sample quantile normalisation);
    both remove any monotone per-sample distortion but turn a platform's gene-wise offsets into changes of order.
    `standardise`: the row centred on its mean and divided by its SD over genes (apply to log expression); it
    removes exactly a per-sample affine distortion of log expression (library size, range compression) and leaves
    a gene-wise offset a near-constant offset, which a linear risk ranks patients through unchanged.
    Non-finite values stay NaN and are left out.
    """
    if kind not in WITHIN_SAMPLE:
        raise ValueError(f"within_sample must be one of {WITHIN_SAMPLE}, got {kind!r}")
    x = np.asarray(matrix, dtype=np.float64)
    if kind == "none":
        return x
    x = np.atleast_2d(np.where(np.isfinite(x), x, np.nan))
    count = np.isfinite(x).sum(axis=1, keepdims=True)
    if kind == "standardise":
        with np.errstate(invalid="ignore", divide="ignore"):
            centre = np.nansum(x, axis=1, keepdims=True) / np.maximum(count, 1)
            spread = np.sqrt(np.nansum((x - centre) ** 2, axis=1, keepdims=True) / np.maximum(count, 1))
        return (x - centre) / np.where(spread > _EPS, spread, 1.0)
    from scipy.special import ndtri
    from scipy.stats import rankdata

    ranks = rankdata(x, axis=1, nan_policy="omit")
    with np.errstate(invalid="ignore", divide="ignore"):
        u = (ranks - 0.5) / count
    return ndtri(u) if kind == "quantile" else u


class RNANormaliser:
    """Within-sample transform (optional) → signed log1p (optional) → the `top_var` most variable genes (optional)
    → z-score (NaN → training mean) → `pca` components (optional).

    `within_sample` (see `within_sample`): "rank" / "quantile" replace the values by their order within the
    patient's own profile (log1p is then skipped: it would only bend a fixed scale); "standardise" centres and
    scales the patient's log expression over its own genes.

    PCA is a numpy SVD of the training z-scores; components are sign-fixed (largest loading positive) so the
    same data always give the same features. With `zscore=False` values are only imputed, not scaled.
    """

    kind = "rna_normaliser"

    def __init__(
        self,
        log1p: bool = True,
        zscore: bool = True,
        top_var: int | None = None,
        pca: int | None = None,
        whiten: bool = False,
        clip: float | None = 10.0,
        top_k: int | None = None,
        n_components: int | None = None,
        within_sample: str = "none",
    ) -> None:
        """`top_k` / `n_components` are accepted as aliases of `top_var` / `pca` (sklearn-style names)."""
        top_var = top_k if top_var is None else top_var
        pca = n_components if pca is None else pca
        if within_sample not in WITHIN_SAMPLE:
            raise ValueError(f"within_sample must be one of {WITHIN_SAMPLE}, got {within_sample!r}")
        self.within_sample = within_sample
        self.log1p = bool(log1p)
        self.zscore = bool(zscore)
        self.top_var = None if top_var is None else int(top_var)
        self.pca = None if pca is None else int(pca)
        self.whiten = bool(whiten)
        self.clip = None if clip is None else float(clip)
        self.genes: list[str] | None = None
        self.n_input: int | None = None
        self.selected: np.ndarray | None = None  # indices into the input vector
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.pca_mean: np.ndarray | None = None
        self.components: np.ndarray | None = None  # (c, k)
        self.pca_scale: np.ndarray | None = None

    def _log(self, x: np.ndarray) -> np.ndarray:
        """The per-sample step on the full gene vector: within-sample order, else signed log1p (or identity)
        followed by the within-sample standardisation when asked."""
        if self.within_sample in _ORDER_ONLY:
            return within_sample(x, self.within_sample)
        logged = np.sign(x) * np.log1p(np.abs(x)) if self.log1p else x
        return within_sample(logged, self.within_sample)

    def fit(self, matrix: np.ndarray, genes: Sequence[str] | None = None) -> RNANormaliser:
        x = np.asarray(matrix, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"RNANormaliser.fit expects (n>0, G), got {x.shape}")
        if genes is not None and len(genes) != x.shape[1]:
            raise ValueError(f"{len(genes)} gene names for {x.shape[1]} columns")
        x = np.where(np.isfinite(x), x, np.nan)
        logged = self._log(x)
        mean, std, _ = _column_stats(logged)
        if self.top_var is not None and self.top_var < x.shape[1]:
            variance = np.where(np.isfinite(logged).sum(0) > 1, std**2, 0.0)
            order = np.argsort(-variance, kind="stable")[: self.top_var]
            self.selected = np.sort(order)
        else:
            self.selected = np.arange(x.shape[1])
        self.n_input = x.shape[1]
        self.genes = list(genes) if genes is not None else None
        self.mean, self.std = mean[self.selected], std[self.selected]
        self.pca_mean = self.components = self.pca_scale = None
        if self.pca:
            z = self._zscore(x)
            rank_cap = max(1, min(z.shape[0] - 1, z.shape[1]))
            c = min(self.pca, rank_cap)
            self.pca_mean = z.mean(axis=0)
            _, singular, vt = np.linalg.svd(z - self.pca_mean, full_matrices=False)
            components = vt[:c]
            signs = np.sign(components[np.arange(c), np.argmax(np.abs(components), axis=1)])
            self.components = components * np.where(signs == 0, 1.0, signs)[:, None]
            sd = singular[:c] / math.sqrt(max(z.shape[0] - 1, 1))
            floor = max(float(sd[0]) * 1e-6, _EPS) if len(sd) else 1.0
            self.pca_scale = np.maximum(sd, floor)
        return self

    def _zscore(self, x: np.ndarray) -> np.ndarray:
        logged = self._log(x)[:, self.selected]
        filled = np.where(np.isfinite(logged), logged, self.mean)
        return (filled - self.mean) / self.std if self.zscore else filled

    @property
    def dim(self) -> int:
        self._check_fitted()
        return len(self.components) if self.components is not None else len(self.selected)

    def feature_names(self) -> list[str]:
        self._check_fitted()
        if self.components is not None:
            return [f"rna_pc{i + 1}" for i in range(len(self.components))]
        if self.genes is not None:
            return [self.genes[i] for i in self.selected]
        return [f"rna_{i}" for i in self.selected]

    def transform(self, matrix: np.ndarray) -> np.ndarray:
        """(G,) → (d,) or (n, G) → (n, d), float32 without NaN."""
        self._check_fitted()
        x = np.asarray(matrix, dtype=np.float64)
        single = x.ndim == 1
        x = np.atleast_2d(x)
        if x.shape[1] != self.n_input:
            raise ValueError(f"RNANormaliser expects {self.n_input} genes, got {x.shape[1]}")
        with np.errstate(invalid="ignore", over="ignore"):
            z = self._zscore(np.where(np.isfinite(x), x, np.nan))
            if self.components is not None:
                z = (z - self.pca_mean) @ self.components.T
                if self.whiten:
                    z = z / self.pca_scale
        out = finite_float32(z, self.clip)
        return out[0] if single else out

    def _check_fitted(self) -> None:
        if self.selected is None:
            raise RuntimeError("RNANormaliser is not fitted")

    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        data: dict[str, Any] = {
            "kind": self.kind,
            "version": 1,
            "log1p": self.log1p,
            "within_sample": self.within_sample,
            "zscore": self.zscore,
            "top_var": self.top_var,
            "pca": self.pca,
            "whiten": self.whiten,
            "clip": self.clip,
            "n_input": self.n_input,
            "genes": self.genes,
            "selected": [int(i) for i in self.selected],
            "mean": _as_list(self.mean),
            "std": _as_list(self.std),
        }
        if self.components is not None:
            data.update(
                pca_mean=_as_list(self.pca_mean),
                pca_scale=_as_list(self.pca_scale),
                components=[_as_list(row) for row in self.components],
            )
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RNANormaliser:
        _check_kind(data, cls.kind)
        norm = cls(
            log1p=data["log1p"],
            within_sample=data.get("within_sample", "none"),  # bundles written before the option: none
            zscore=data["zscore"],
            top_var=data["top_var"],
            pca=data["pca"],
            whiten=data["whiten"],
            clip=data["clip"],
        )
        norm.n_input = int(data["n_input"])
        norm.genes = list(data["genes"]) if data.get("genes") is not None else None
        norm.selected = np.asarray(data["selected"], dtype=np.int64)
        norm.mean = np.asarray(data["mean"], dtype=np.float64)
        norm.std = np.asarray(data["std"], dtype=np.float64)
        if data.get("components") is not None:
            norm.pca_mean = np.asarray(data["pca_mean"], dtype=np.float64)
            norm.pca_scale = np.asarray(data["pca_scale"], dtype=np.float64)
            norm.components = np.asarray(data["components"], dtype=np.float64).reshape(-1, len(norm.selected))
        return norm


class Standardiser:
    """z-score per column with NaN/inf imputed by the training mean (MRI measurements, any other vector)."""

    kind = "standardiser"

    def __init__(self, clip: float | None = 10.0) -> None:
        self.clip = None if clip is None else float(clip)
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.names: list[str] | None = None

    def fit(self, matrix: np.ndarray, names: Sequence[str] | None = None) -> Standardiser:
        x = np.asarray(matrix, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"Standardiser.fit expects (n>0, D), got {x.shape}")
        if names is not None and len(names) != x.shape[1]:
            raise ValueError(f"{len(names)} names for {x.shape[1]} columns")
        self.mean, self.std, _ = _column_stats(np.where(np.isfinite(x), x, np.nan))
        self.names = list(names) if names is not None else None
        return self

    @property
    def dim(self) -> int:
        self._check_fitted()
        return len(self.mean)

    def feature_names(self) -> list[str]:
        self._check_fitted()
        return list(self.names) if self.names is not None else [f"x{i}" for i in range(len(self.mean))]

    def transform(self, matrix: np.ndarray) -> np.ndarray:
        """(D,) → (D,) or (n, D) → (n, D), float32 without NaN."""
        self._check_fitted()
        x = np.asarray(matrix, dtype=np.float64)
        single = x.ndim == 1
        x = np.atleast_2d(x)
        if x.shape[1] != len(self.mean):
            raise ValueError(f"Standardiser expects {len(self.mean)} columns, got {x.shape[1]}")
        z = (np.where(np.isfinite(x), x, self.mean) - self.mean) / self.std
        out = finite_float32(z, self.clip)
        return out[0] if single else out

    def _check_fitted(self) -> None:
        if self.mean is None:
            raise RuntimeError("Standardiser is not fitted")

    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "kind": self.kind,
            "version": 1,
            "clip": self.clip,
            "names": self.names,
            "mean": _as_list(self.mean),
            "std": _as_list(self.std),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Standardiser:
        _check_kind(data, cls.kind)
        std = cls(clip=data["clip"])
        std.mean = np.asarray(data["mean"], dtype=np.float64)
        std.std = np.asarray(data["std"], dtype=np.float64)
        std.names = list(data["names"]) if data.get("names") is not None else None
        return std
