"""The training config (YAML): a typed model with defaults, path resolution and a stable hash that names a run.

Why typed: a misspelt key used to be ignored silently and a wrong type failed deep inside a fold. Every section is a
pydantic model with `extra="forbid"`, so an unknown key or a wrong type is a `ConfigError` naming the key path
(`train.epoch: unknown key (did you mean 'epochs'?)`). ONE place to add a key: a field on its section below (with
its default); docs/training.md lists every key (a test checks it), `load_config` still returns a plain dict.

Free-form on purpose: `model` / `compare.<name>` (architecture configs, checked by the registries when built),
`calibration`, `train.loss`, `cohort.labels.columns`. `recipe` is checked against `FeatureRecipe`'s fields.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator


class ConfigError(ValueError):
    """A config the user must fix: one line naming the file and the key path."""


class _Section(BaseModel):
    # strict: `epochs: yes` (a YAML bool) or `lr: "0.1"` is refused, not coerced; an int is still a float.
    model_config = ConfigDict(extra="forbid", strict=True)


class LabelsConfig(_Section):
    csv: str | None = None  # a CSV with the labels (else the clinical JSON keys the schema names)
    columns: dict[str, str | None] | None = None  # case_id/time/event/label/cohort → CSV column
    positive: list[str] | None = None  # CSV/JSON values meaning the positive class (Task 2)


class CohortConfig(_Section):
    root: str | None = None
    # the table route (train/table.py): one row per patient in a CSV/Parquet file instead of `root`
    table: str | None = None
    id: str = "case_id"  # the table's id column
    time: str | None = None  # survival time column (default "time"), in the unit of the output (months)
    event: str | None = None  # event column (default "event")
    label: str | None = None  # binary tasks: the label column (values in labels.positive are positive)
    cohort_column: str | None = None  # centre / study column (stratification, cohort-held-out rows)
    rna_table: str | None = None  # a wide table: the id column + one column per gene
    slides_h5: str | None = None  # a folder of Trident/CLAM `.h5` patch features, `<id>.h5` or `<id>_*.h5`
    # a folder of slide-encoder vectors (.h5/.npy/.json), `<id>[_*].<ext>`; table and folder routes (without it the
    # folder route reads `slide_embeddings/` folders under the root, train/cohort.py)
    slide_embeddings: str | None = None
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    cohort_regex: str | None = r"^([0-9]+[A-Za-z])_"
    default_cohort: str = "all"


class RnaPreprocess(_Section):
    scale: Literal["counts", "log"] = "counts"  # counts: log1p applied; log: already log-transformed (data.py)
    log1p: bool | None = None  # legacy; must agree with `scale` when given
    within_sample: Literal["none", "rank", "quantile", "standardise"] = "none"  # single-patient-safe transform (preprocess.py)
    zscore: bool = True
    top_var: int | None = None
    pca: int | None = None
    top_k: int | None = None  # alias of top_var
    n_components: int | None = None  # alias of pca
    whiten: bool = False
    clip: float | None = 10.0


class ClipPreprocess(_Section):
    clip: float | None = 10.0


class PreprocessConfig(_Section):
    rna: RnaPreprocess = Field(default_factory=RnaPreprocess)
    mri: ClipPreprocess = Field(default_factory=ClipPreprocess)
    clinical: ClipPreprocess = Field(default_factory=ClipPreprocess)


class ProtocolConfig(_Section):
    folds: int = Field(5, ge=2)
    repeats: int = Field(1, ge=1)
    inner_val: float = Field(0.2, gt=0, lt=1)
    cohort_holdout: bool = True
    bootstrap: int = Field(500, ge=0)
    members: int = Field(5, ge=2)
    # the shipped ensemble is members × member_repeats models (one k-fold per repeat); each patient's out-of-fold
    # risk, which fits the calibration, is then the average of member_repeats models. 3 steadied the calibration
    # slope where one member's fold went badly, at 3x the cost, without making D-calibration hold (docs/models.md)
    member_repeats: int = Field(1, ge=1)


class TrainSection(_Section):
    epochs: int = Field(60, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(15, ge=1)
    min_epochs: int = Field(5, ge=0)
    max_patches: int | None = 256
    modality_dropout: dict[str, float] = Field(default_factory=dict)
    grad_clip: float | None = 5.0
    loss: dict[str, Any] | None = None  # default: Cox/Breslow (Tasks 1, 3), class-weighted BCE (Task 2)
    deephit_cuts: Literal["equidistant", "quantiles"] = "equidistant"
    # train/deep.py; defaults = what measured best on small cohorts (benchmarks/results/deep_small_cohort.md)
    stopping: Literal["holdout", "inner_cv"] = "holdout"
    inner_folds: int = Field(3, ge=2)
    smooth: int = Field(3, ge=1)
    seeds: int = Field(3, ge=1)
    average: Literal["none", "swa", "ema"] = "none"
    average_last: int = Field(5, ge=1)
    ema_decay: float = Field(0.8, gt=0, lt=1)
    bag_augment: dict[Literal["shift", "scale", "noise", "drop"], float] = Field(default_factory=dict)  # augment.py


class AuditConfig(_Section):
    maskers: list[Any] | None = None  # default train/audit.py DEFAULT_MASKERS
    missing: str = "null"
    batch_size: int = Field(64, ge=1)


class ReportConfig(_Section):
    horizons: list[float] | None = None  # calibration horizons in months; default: 25/50/75% of follow-up
    heatmaps: int = Field(6, ge=0)  # out-of-fold patients whose attention heatmaps the report draws


class SurvivalCurveConfig(_Section):
    # the stored per-patient S(t) (train/survival_curve.py): its Cox fit and inference see the risk winsorised to
    # median ± clip_mad robust SDs of the out-of-fold risks; null = no clipping
    clip_mad: float | None = Field(None, gt=0)


class TrainConfig(_Section):
    task: Literal[1, 2, 3, "survival", "binary"] = 3  # a CHIMERA task, or a generic one (chimera_surv/generic.py)
    task_name: str | None = None  # generic tasks only: the bundle folder's name
    output_file: str | None = None  # generic tasks only: predict_cohort's default output
    seed: int = 0
    threads: int = Field(1, ge=1)
    cohort: CohortConfig = Field(default_factory=CohortConfig)
    schema_: int | str | None = Field(None, alias="schema")  # task id, "task3" or a schema JSON path
    genes: str | None = "from_cohort"  # a JSON list path, or from_cohort (the first RNA file's genes)
    modalities: list[Literal["wsi", "mri", "clinical", "rna", "slide_embedding"]] | None = None  # default: the task's
    recipe: dict[str, Any] = Field(default_factory=lambda: {"encoder": "test-tiny", "target_mpp": 0.5,
                                                            "patch_size": 224, "min_tissue": 0.1})
    encoder_root: str | None = "model/encoders"
    mri_kind: str = "measurements"
    device: str = "cpu"
    work_dir: str = "runs/default"
    out: str | None = None  # the bundle folder; default model/<task name>
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    train: TrainSection = Field(default_factory=TrainSection)
    # `auto` (train/selection/: classical families + ensembles chosen by nested inner CV), a classical family
    # `{family: ...}`, or a network architecture (empty = train/networks.py defaults)
    model: Literal["auto"] | dict[str, Any] = "auto"
    auto: dict[str, Any] = Field(default_factory=dict)  # overrides of train/selection/ AUTO_DEFAULTS
    compare: dict[str, dict[str, Any]] = Field(default_factory=dict)  # name → architecture, same folds
    calibration: dict[str, Any] | None = None  # default km_quantile (survival) / platt (Task 2)
    survival_curve: SurvivalCurveConfig = Field(default_factory=SurvivalCurveConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, protected_namespaces=())

    @field_validator("auto")
    @classmethod
    def _auto_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        from train.selection import AUTO_DEFAULTS  # the one list of auto's settings
        from train.selection.options import CV_MODELS, SWITCHES

        unknown = sorted(set(value) - set(AUTO_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} (known: {sorted(AUTO_DEFAULTS)})")
        if value.get("switch", "any") not in SWITCHES:
            raise ValueError(f"switch: {value['switch']!r} is not one of {', '.join(SWITCHES)}")
        if value.get("cv_model", "committee") not in CV_MODELS:
            raise ValueError(f"cv_model: {value['cv_model']!r} is not one of {', '.join(CV_MODELS)}")
        jobs = value.get("network_jobs", 1)
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"network_jobs: {jobs!r} is not a whole number of worker processes >= 1")
        return value


def _dump(cfg: TrainConfig) -> dict[str, Any]:
    out = cfg.model_dump(by_alias=True)
    out["cohort"]["labels"] = cfg.cohort.labels.model_dump(exclude_none=True)  # LabelSpec reads .get(key, default)
    if cfg.cohort.labels.columns is not None:  # a null role means "from the clinical JSON": keep it
        out["cohort"]["labels"]["columns"] = dict(cfg.cohort.labels.columns)
    if out["preprocess"]["rna"].get("log1p") is None:  # legacy key, only passed on when given
        out["preprocess"]["rna"].pop("log1p")
    return out


DEFAULTS: dict[str, Any] = _dump(TrainConfig())


def default_keys(model: type[BaseModel] = TrainConfig, prefix: str = "") -> dict[str, Any]:
    """Every key path with its default (nested sections flattened): what docs/training.md lists."""
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            out.update(default_keys(sub, key + "."))
        else:
            out[key] = field.get_default(call_default_factory=True)
    return out


def _known(path: tuple[Any, ...]) -> list[str]:
    """Field names at a key path (for the did-you-mean hint)."""
    model: Any = TrainConfig
    for part in path:
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None)
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return [f.alias or n for n, f in model.model_fields.items()]


def _describe(error: ValidationError, prefix: tuple[Any, ...] = ()) -> str:
    lines = []
    for item in error.errors():
        loc = prefix + tuple(item["loc"])
        path = ".".join(str(p) for p in loc)
        if item["type"] == "extra_forbidden":
            known = _known(loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(known)})" if known else ""
            lines.append(f"{path}: unknown key{hint}")
        else:
            lines.append(f"{path}: {item['msg']} (got {item.get('input')!r})")
    return "; ".join(lines)


def _recipe_type() -> Any:
    from chimera_surv.features import FeatureRecipe

    return FeatureRecipe


def _check_recipe(recipe: dict[str, Any], where: str) -> None:
    """Types and names of `recipe` against FeatureRecipe (a dataclass the bundle stores as a dict)."""
    recipe_type = _recipe_type()
    known = {f.name for f in dataclasses.fields(recipe_type)}
    for key in recipe:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}: recipe.{key}: unknown key{hint}")
    try:
        TypeAdapter(recipe_type).validate_python({**recipe})
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_describe(exc, ('recipe',))}") from None


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_path(value: str | Path | None, base: Path) -> Path | None:
    """Relative paths are taken relative to the config file's folder (so a config runs from any directory)."""
    if value is None:
        return None
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently: a second `train:`
    block would reset `epochs`) and reads `1e-3` as a float (YAML 1.1 wants `1.0e-3`; strict types would refuse
    the string)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: merged keys may be overridden, by design
                continue
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (line {line}; first at line {seen[key]})", key_node.start_mark)
            if isinstance(key, (str, int, float, bool)):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"), list("-+0123456789."))


def _read(source: str | Path) -> dict[str, Any]:
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.load(path.read_text(), Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.constructor.ConstructorError as exc:
        if exc.problem and exc.problem.startswith("duplicate key"):
            line = exc.problem_mark.line + 1 if exc.problem_mark else 0
            raise ConfigError(f"{path}:{line}: {exc.problem}") from None
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}")
    return raw or {}


def load_config(source: str | Path | dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate a YAML file (or dict) merged with overrides; unknown keys and wrong types raise ConfigError.

    Returns the plain dict every step reads, with every default filled in; `_base` holds the folder relative
    paths are resolved against (the config file's folder; the current folder for a dict).
    """
    if isinstance(source, dict):
        raw, base, where = dict(source), Path(source.get("_base") or Path.cwd()), "config"
        raw.pop("_base", None)
    else:
        raw, base, where = _read(source), Path(source).resolve().parent, str(source)
    raw = _merge(raw, overrides or {})
    try:
        cfg = TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_describe(exc)}") from None
    config = _dump(cfg)
    config["recipe"] = _merge(DEFAULTS["recipe"], raw.get("recipe") or {})
    _check_recipe(config["recipe"], where)
    config["_base"] = str(base)
    return config


# survival_curve: fitted at export from the members' saved out-of-fold risks, so changing it re-exports, not refits
NOT_HASHED = ("_base", "work_dir", "out", "encoder_root", "device", "compare", "audit", "report", "survival_curve")


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of what changes a trained model: paths, the comparison list, the audit and the report are left out,
    so adding a comparison architecture reuses the exported model's folds and members (each CV record also stores
    its own architecture config)."""
    keep = {k: v for k, v in config.items() if k not in NOT_HASHED}
    # bootstrap: reporting only; member_repeats 1: the work folders from before the key existed stay valid
    keep["protocol"] = {k: v for k, v in keep.get("protocol", {}).items()
                        if k != "bootstrap" and not (k == "member_repeats" and v == 1)}
    if isinstance(keep.get("auto"), dict):  # worker processes change how fast, not what is fitted
        keep["auto"] = {k: v for k, v in keep["auto"].items() if k != "network_jobs"}
    # a changed default rule must not reuse the results that the old one chose
    from train.selection import AUTO_DEFAULTS

    keep["auto_defaults"] = {k: v for k, v in AUTO_DEFAULTS.items() if k != "network_jobs"}
    keep["cohort"] = {k: v for k, v in keep.get("cohort", {}).items() if k != "root"}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]
