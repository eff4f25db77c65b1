"""Clinical JSON → a typed record, driven entirely by a per-task schema (resources/schemas/task*.json).

Why a schema file rather than code: a cohort with other clinical fields must train from a new schema JSON
alone, and the bundle carries the schema it was trained with. Parsing never raises on content: every oddity
the platform may hand us ("-1", "x", null, numbers as strings, a list-wrapped object, unknown categories,
missing keys) becomes None plus a human-readable issue (chimera-spec.md §2).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chimera_surv.errors import describe

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "resources" / "schemas"
FEATURE_TYPES = ("numeric", "ordinal", "categorical", "binary", "flags")
DEFAULT_MISSING_TOKENS = ("-1", "x", "", "nan", "na", "n/a", "null")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


class _Unusable(Exception):
    """A raw value of a JSON type that no feature accepts (object, array)."""


def match_key(text: str) -> str:
    """Token comparison form: case-folded, whitespace removed ("UCC + Variant" == "ucc+variant")."""
    return "".join(text.split()).casefold()


def canonical_text(value: Any) -> str | None:
    """Text form of a JSON scalar for matching: 1, 1.0 and "1.0" all become "1"; None/NaN become None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.match(text):
            number = float(text)
            if math.isfinite(number) and number.is_integer() and abs(number) < 1e15:
                return str(int(number))
        return text
    raise _Unusable(type(value).__name__)


def parse_number(value: Any) -> float | None:
    """A finite float from a number or a numeric string ("7.9", " 64 ", "7,9"); None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        if isinstance(value, int) and abs(value) > 10**300:  # float() of a 400-digit integer raises OverflowError
            return None
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if "," in text and "." not in text and text.count(",") == 1:
            text = text.replace(",", ".")
        if not _NUMBER.match(text):
            return None
        number = float(text)
    else:
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class FeatureSpec:
    """One clinical key: its type and how raw values map to a float or a category (see docs in the schema)."""

    key: str
    type: str
    range: tuple[float, float] | None = None
    levels: dict[str, float] = field(default_factory=dict)  # ordinal: match_key(token) → value
    categories: tuple[str, ...] = ()  # categorical: canonical names; empty = open set
    aliases: dict[str, str] = field(default_factory=dict)  # match_key(alias) → canonical category
    true_tokens: frozenset[str] = frozenset()
    false_tokens: frozenset[str] = frozenset()
    threshold: float | None = None  # binary: a number above it is positive (counts, 2 = "yes")
    flags: dict[str, tuple[str, ...]] = field(default_factory=dict)  # flags: name → substrings
    none_tokens: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()  # stripped before matching ("pT2a" → "2a")
    missing_tokens: frozenset[str] = frozenset()

    def columns(self) -> list[tuple[str, str]]:
        """(column name, kind) in the record; a flags feature expands to one binary column per flag."""
        if self.type == "flags":
            return [(f"{self.key}__{name}", "binary") for name in self.flags]
        return [(self.key, self.type)]


def _feature_from_dict(key: str, spec: Mapping[str, Any], global_missing: list[str]) -> FeatureSpec:
    kind = spec.get("type")
    if kind not in FEATURE_TYPES:
        raise ValueError(f"schema feature '{key}': type {kind!r} is not one of {FEATURE_TYPES}")
    missing = [str(t) for t in spec.get("missing_tokens", global_missing)] + [
        str(t) for t in spec.get("extra_missing_tokens", [])
    ]
    value_range = spec.get("range")
    if value_range is not None:
        lo, hi = (float(v) for v in value_range)
        if not lo <= hi:
            raise ValueError(f"schema feature '{key}': range {value_range} is empty")
        value_range = (lo, hi)
    levels = {match_key(canonical_text(k) or ""): float(v) for k, v in spec.get("levels", {}).items()}
    if kind == "ordinal" and not levels:
        raise ValueError(f"schema feature '{key}': an ordinal needs 'levels'")
    if kind == "flags" and not spec.get("flags"):
        raise ValueError(f"schema feature '{key}': a flags feature needs 'flags'")
    categories = tuple(str(c) for c in spec.get("categories", []))
    aliases = {match_key(c): c for c in categories}
    aliases.update({match_key(str(a)): str(c) for a, c in spec.get("aliases", {}).items()})
    return FeatureSpec(
        key=key,
        type=kind,
        range=value_range,
        levels=levels,
        categories=categories,
        aliases=aliases,
        true_tokens=frozenset(match_key(str(t)) for t in spec.get("true", ["1", "yes", "true"])),
        false_tokens=frozenset(match_key(str(t)) for t in spec.get("false", ["0", "no", "false"])),
        threshold=None if spec.get("threshold") is None else float(spec["threshold"]),
        flags={str(n): tuple(match_key(s) for s in subs) for n, subs in spec.get("flags", {}).items()},
        none_tokens=frozenset(match_key(str(t)) for t in spec.get("none_tokens", [])),
        prefixes=tuple(match_key(str(p)) for p in sorted(spec.get("prefixes", []), key=len, reverse=True)),
        missing_tokens=frozenset(match_key(t) for t in missing),
    )


@dataclass(frozen=True)
class ClinicalSchema:
    """A task's clinical features plus the keys to drop (labels, leakage, known extras)."""

    name: str
    features: tuple[FeatureSpec, ...]
    labels: dict[str, Any]
    label_keys: frozenset[str]
    drop_keys: frozenset[str]  # labels + leakage + known extra keys: removed silently
    raw: dict[str, Any]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClinicalSchema:
        """Validate and build; a malformed schema is a configuration error and raises ValueError."""
        if not isinstance(data, Mapping) or not isinstance(data.get("features"), Mapping):
            raise ValueError("a clinical schema needs a 'features' object")  # noqa: TRY004 - one error type
        global_missing = [str(t) for t in data.get("missing_tokens", DEFAULT_MISSING_TOKENS)]
        features = tuple(_feature_from_dict(str(k), v, global_missing) for k, v in data["features"].items())
        labels = dict(data.get("labels", {}))
        label_keys = frozenset(str(labels[k]) for k in ("time", "event", "target") if k in labels)
        drop = (
            label_keys
            | {str(k) for k in data.get("leakage_keys", [])}
            | {str(k) for k in data.get("ignore_keys", [])}
        )
        overlap = drop & {f.key for f in features}
        if overlap:
            raise ValueError(f"schema keys {sorted(overlap)} are both features and labels/ignored keys")
        return cls(
            name=str(data.get("name", "clinical")),
            features=features,
            labels=labels,
            label_keys=label_keys,
            drop_keys=frozenset(drop),
            raw=copy.deepcopy(dict(data)),
        )

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.raw)

    def columns(self) -> list[tuple[str, str]]:
        """Every (column, kind) a ClinicalRecord of this schema holds, in schema order."""
        return [col for feature in self.features for col in feature.columns()]

    def feature(self, key: str) -> FeatureSpec:
        for spec in self.features:
            if spec.key == key:
                return spec
        raise KeyError(key)


@dataclass
class ClinicalRecord:
    """Parsed clinical values (None = missing) keyed by schema column, and every issue met while parsing."""

    values: dict[str, float | str | None]
    issues: list[str] = field(default_factory=list)
    # feature key → why it is missing: "absent" (no key / no clinical data), "missing" (a missing token),
    # "out_of_range", "unknown" (level, category or binary value), "unparsable"; training counts them
    problems: dict[str, str] = field(default_factory=dict)

    def n_present(self) -> int:
        return sum(v is not None for v in self.values.values())


def load_schema(task_or_path: Any) -> ClinicalSchema:
    """A schema from a task id (1/2/3, "task1"), a Task, a mapping, or the path of any schema JSON."""
    if isinstance(task_or_path, ClinicalSchema):
        return task_or_path
    if isinstance(task_or_path, Mapping):
        return ClinicalSchema.from_dict(task_or_path)
    schema_file = getattr(task_or_path, "clinical_schema", None)
    if isinstance(schema_file, str):
        return load_schema(SCHEMA_DIR / schema_file)
    if isinstance(task_or_path, int) and not isinstance(task_or_path, bool):
        return load_schema(SCHEMA_DIR / f"task{task_or_path}.json")
    text = str(task_or_path)
    if re.fullmatch(r"(task)?[123]", text):
        return load_schema(SCHEMA_DIR / f"task{text[-1]}.json")
    path = Path(text).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"clinical schema not found: {path}")
    return _load_schema_file(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _load_schema_file(path: str, mtime_ns: int) -> ClinicalSchema:
    """Parsed once per file version: parse_clinical(raw, 3) is called once per patient during training."""
    return ClinicalSchema.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def unwrap_json_object(raw: Any, what: str) -> tuple[dict[str, Any] | None, list[str]]:
    """The JSON object inside `raw` (itself, a one-element list, or JSON text), else None with an issue."""
    issues: list[str] = []
    if isinstance(raw, (bytes, bytearray)):
        raw = raw.decode("utf-8", errors="replace")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None, [f"{what}: text is not JSON"]
    if isinstance(raw, list):
        if not raw:
            return None, [f"{what}: empty list"]
        if len(raw) > 1:
            issues.append(f"{what}: list of {len(raw)} elements, using the first")
        else:
            issues.append(f"{what}: object wrapped in a one-element list, unwrapped")
        raw = raw[0]
        if isinstance(raw, list) and len(raw) == 1:
            raw = raw[0]
    if not isinstance(raw, dict):
        return None, issues + [f"{what}: expected a JSON object, got {type(raw).__name__}"]
    return raw, issues


def _strip_prefix(token: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        if token.startswith(prefix) and len(token) > len(prefix):
            return token[len(prefix) :]
    return token


def _parse_value(spec: FeatureSpec, raw: Any) -> tuple[Any, str | None]:
    """(parsed value or None, issue or None) for one non-flags feature; never raises."""
    try:
        text = canonical_text(raw)
    except _Unusable as exc:
        return None, f"clinical '{spec.key}': unusable {exc} value"
    if text is None or match_key(text) in spec.missing_tokens:
        return None, f"clinical '{spec.key}': missing ({raw!r})"
    token = _strip_prefix(match_key(text), spec.prefixes)
    if spec.type == "numeric":
        number = parse_number(raw)
        if number is None:
            return None, f"clinical '{spec.key}': not a number ({raw!r})"
        if spec.range is not None and not spec.range[0] <= number <= spec.range[1]:
            return None, f"clinical '{spec.key}': {number} outside {list(spec.range)}"
        if isinstance(raw, str):
            return number, f"clinical '{spec.key}': number given as text ({raw!r}), parsed"
        return number, None
    if spec.type == "ordinal":
        if token in spec.levels:
            return spec.levels[token], None
        return None, f"clinical '{spec.key}': unknown level {raw!r}"
    if spec.type == "categorical":
        if token in spec.aliases:
            return spec.aliases[token], None
        if not spec.categories:  # an open category set keeps any text
            return text, None
        return None, f"clinical '{spec.key}': unknown category {raw!r}"
    # binary
    if token in spec.true_tokens:
        return 1.0, None
    if token in spec.false_tokens:
        return 0.0, None
    number = parse_number(raw)
    if spec.threshold is not None and number is not None and number >= 0:
        return (1.0 if number > spec.threshold else 0.0), None
    return None, f"clinical '{spec.key}': unknown binary value {raw!r}"


def _parse_flags(spec: FeatureSpec, raw: Any) -> tuple[dict[str, float | None], str | None]:
    """A multi-valued text ("radiotherapy + hormones") → one 0/1 column per flag, by substring."""
    columns = [name for name, _ in spec.columns()]
    missing = dict.fromkeys(columns)
    try:
        text = canonical_text(raw)
    except _Unusable as exc:
        return missing, f"clinical '{spec.key}': unusable {exc} value"
    if text is None or match_key(text) in spec.missing_tokens:
        return missing, f"clinical '{spec.key}': missing ({raw!r})"
    token = match_key(text)
    if token in spec.none_tokens:
        return dict.fromkeys(columns, 0.0), None
    hits = {
        col: (1.0 if any(s in token for s in subs) else 0.0)
        for col, subs in zip(columns, spec.flags.values())
    }
    if not any(hits.values()):
        return missing, f"clinical '{spec.key}': unrecognised value {raw!r}"
    return hits, None


def parse_clinical(raw: Any, schema: Any) -> ClinicalRecord:
    """Parse one patient's clinical JSON against `schema` (a ClinicalSchema or anything load_schema takes)."""
    schema = load_schema(schema)
    values: dict[str, float | str | None] = {name: None for name, _ in schema.columns()}
    data, issues = unwrap_json_object(raw, "clinical")
    if data is None:
        return ClinicalRecord(values, issues + ["clinical: every feature missing"],
                              dict.fromkeys((f.key for f in schema.features), "absent"))
    problems: dict[str, str] = {}
    by_folded = {}
    for key in data:
        by_folded.setdefault(str(key).casefold(), key)
    used: set[Any] = set()
    for spec in schema.features:
        key = spec.key if spec.key in data else by_folded.get(spec.key.casefold())
        if key is None:
            issues.append(f"clinical '{spec.key}': key absent")
            problems[spec.key] = "absent"
            continue
        if key != spec.key:
            issues.append(f"clinical '{spec.key}': read from key '{key}'")
        used.add(key)
        try:
            if spec.type == "flags":
                parsed, issue = _parse_flags(spec, data[key])
                values.update(parsed)
            else:
                values[spec.key], issue = _parse_value(spec, data[key])
        except Exception as exc:  # noqa: BLE001 - one unparseable value costs that feature only
            values.update({name: None for name, _ in spec.columns()})
            issue = f"clinical '{spec.key}': unreadable value ({describe(exc)}), treated as missing"
        if issue:
            issues.append(issue)
            if all(values[name] is None for name, _ in spec.columns()):
                problems[spec.key] = _problem_kind(issue)
    for key in data:
        if key not in used and str(key) not in schema.drop_keys:
            issues.append(f"clinical: unknown key '{key}' ignored")
    return ClinicalRecord(values, issues, problems)


def _problem_kind(issue: str) -> str:
    """The kind of an issue that left a feature missing (the issue texts are this module's own)."""
    text = issue.split(": ", 1)[-1]
    if text.startswith("missing ("):
        return "missing"
    if " outside [" in text:
        return "out_of_range"
    if text.startswith(("unknown ", "unrecognised ")):
        return "unknown"
    return "unparsable"  # not a number, unusable, unreadable


def read_labels(raw: Any, schema: Any) -> dict[str, float | None]:
    """Training labels named by the schema: {"time", "event"} (survival) or {"target"} (classification)."""
    schema = load_schema(schema)
    data, _ = unwrap_json_object(raw, "clinical")
    data = data or {}
    labels = schema.labels
    out: dict[str, float | None] = {}
    if "time" in labels:
        out["time"] = parse_number(data.get(labels["time"]))
    if "event" in labels:
        out["event"] = _label_flag(data.get(labels["event"]), labels.get("event_true", ["1"]))
    if "target" in labels:
        out["target"] = _label_flag(data.get(labels["target"]), labels.get("positive", ["1"]))
    return out


def _label_flag(raw: Any, positives: list[str]) -> float | None:
    try:
        text = canonical_text(raw)
    except _Unusable:
        return None
    if text is None or match_key(text) in {match_key(t) for t in DEFAULT_MISSING_TOKENS}:
        return None
    return 1.0 if match_key(text) in {match_key(canonical_text(p) or "") for p in positives} else 0.0
