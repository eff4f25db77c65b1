"""`ChimeraSurvival`: the project's training as a scikit-learn estimator, for users who compare models in sklearn.

Why a wrapper and not a second model: `fit` is the table route (train/table.py: the same `Run`, fold-fitted
preprocessing, `model: auto` selection and ensemble members, exported by train/export.py), and `predict` is the
container's `Bundle.predict` on the exported bundle, so a model scored in `cross_val_score` is the one
`inference.py` / `predict_cohort` would run. scikit-survival conventions: `y` is a structured array (a boolean
event field and a float time field, `sksurv.util.Surv`), `predict` returns a risk (higher = earlier event),
`predict_survival_function` returns `StepFunction`s, `score` is Harrell's C.

    est = ChimeraSurvival().fit(X, y)      # X: a DataFrame of clinical columns
    est.predict(X_new); est.save("model/my-cohort"); ChimeraSurvival.load("model/my-cohort")

S(t) comes from a one-covariate Cox model on the ensemble's out-of-fold risk (Breslow baseline), fitted on the
training patients only; times are in the unit of `y` (the bundle's calibration reads them as months).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

ESTIMATOR_JSON = "estimator.json"  # beside bundle.json: the estimator's params and S(t) baseline (the container ignores it)
ID = "_row"


def _frame(X: Any) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X.rename(columns=str).reset_index(drop=True)
    array = np.asarray(X)
    if array.ndim != 2:
        raise ValueError(f"X must be 2-d (patients x columns), got shape {array.shape}")
    return pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])


def survival_target(y: Any) -> tuple[np.ndarray, np.ndarray]:
    """(time float64, event int64) from sksurv's structured array: its boolean field is the event, the other the
    time (names vary: cens/time, fstat/lenfol)."""
    names = getattr(getattr(y, "dtype", None), "names", None)
    if not names or len(names) != 2:
        raise ValueError("y must be a structured array with an event and a time field (sksurv.util.Surv)")
    bools = [n for n in names if y.dtype[n] == np.bool_]
    event_name = bools[0] if bools else names[0]
    time_name = next(n for n in names if n != event_name)
    time, event = np.asarray(y[time_name], np.float64), np.asarray(y[event_name]).astype(np.int64)
    if not np.isfinite(time).all() or (time < 0).any():
        raise ValueError(f"y['{time_name}']: times must be finite and >= 0")
    return time, event


class ChimeraSurvival(BaseEstimator):
    """Survival model of `python -m train` (`model: auto` by default) behind fit / predict / score.

    Parameters are config-level settings: `model` (auto or a family/network config), `auto` (overrides of auto's
    settings, e.g. a shorter candidate list), `members` (ensemble size), `seed`, `schema` (a clinical schema path
    or dict; None infers one from X), `config` (any other config key, docs/training.md) and `work_dir` (where a
    fit's work folder is made; a temporary folder by default, removed after the fit).
    """

    def __init__(self, model: Any = "auto", auto: dict[str, Any] | None = None, members: int = 5, seed: int = 0,
                 schema: Any = None, config: dict[str, Any] | None = None, work_dir: str | None = None) -> None:
        self.model = model
        self.auto = auto
        self.members = members
        self.seed = seed
        self.schema = schema
        self.config = config
        self.work_dir = work_dir

    # ------------------------------------------------------------------------------------------------ fit
    def _config(self, work: Path) -> dict[str, Any]:
        config = json.loads(json.dumps(self.config or {}))
        config.update(model=self.model, auto=dict(self.auto or {}), seed=int(self.seed))
        config["protocol"] = {**(config.get("protocol") or {}), "members": int(self.members)}
        config.setdefault("report", {})["heatmaps"] = 0
        if isinstance(self.schema, dict):
            (work / "schema.json").write_text(json.dumps(self.schema))
            config["schema"] = str(work / "schema.json")
        elif self.schema is not None:
            config["schema"] = str(Path(self.schema).resolve())
        return config

    def fit(self, X: Any, y: Any = None, *, time: str | None = None, event: str | None = None) -> ChimeraSurvival:
        """X: clinical columns (DataFrame or array); y: sksurv's structured array, or None with `time`/`event`
        naming columns of X."""
        from train.protocol import oof_standardised
        from train.table import table_run

        frame = _frame(X)
        if y is None:
            if not (time and event):
                raise ValueError("give y (a structured array) or the names of X's time and event columns")
            times, events = survival_target(np.rec.fromarrays(
                [frame[event].astype(bool).to_numpy(), frame[time].to_numpy(np.float64)], names="event,time"))
            frame = frame.drop(columns=[time, event])
        else:
            times, events = survival_target(y)
        if len(times) != len(frame):
            raise ValueError(f"X has {len(frame)} rows, y has {len(times)}")
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = frame.shape[1]
        table = frame.assign(**{ID: [f"r{i:07d}" for i in range(len(frame))], "__time": times, "__event": events})
        parent = Path(self.work_dir) if self.work_dir else None
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="chimera-fit-", dir=parent))
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the inferred schema is kept in schema_ instead
                run = table_run(table, work_dir=work / "run", out=work / "bundle", id=ID, time="__time",
                                event="__event", config=self._config(work))
                bundle = run.export()  # fits the members first
                oof = oof_standardised(run.context(), run.fit())  # cached members: what the calibration saw
                self.schema_ = run.schema.to_dict()
            self._files = {p.name: p.read_bytes() for p in sorted(bundle.iterdir()) if p.is_file()}
        finally:
            _close_logs(work)
            shutil.rmtree(work, ignore_errors=True)
        self._fit_survival(oof, times, events)
        self._load_bundle()
        return self

    def _fit_survival(self, oof: np.ndarray, times: np.ndarray, events: np.ndarray) -> None:
        from sksurv.linear_model import CoxPHSurvivalAnalysis
        from sksurv.util import Surv

        cox = CoxPHSurvivalAnalysis(alpha=1e-6).fit(oof.reshape(-1, 1), Surv.from_arrays(events.astype(bool), times))
        self.survival_ = {"coef": float(cox.coef_[0]), "times": cox.baseline_survival_.x.tolist(),
                          "baseline": cox.baseline_survival_.y.tolist()}
        self.unique_times_ = np.asarray(self.survival_["times"])

    def _load_bundle(self) -> None:
        from chimera_surv.bundle import load_bundle

        with tempfile.TemporaryDirectory() as folder:
            for name, data in self._files.items():
                (Path(folder) / name).write_bytes(data)
            self.bundle_ = load_bundle(folder)

    # ------------------------------------------------------------------------------------------------ predict
    def _check_fitted(self) -> None:
        from sklearn.exceptions import NotFittedError

        if not hasattr(self, "bundle_"):
            raise NotFittedError("ChimeraSurvival is not fitted yet: call fit(X, y) or ChimeraSurvival.load(folder)")

    def predict(self, X: Any) -> np.ndarray:
        """Risk per patient (the ensemble's mean standardised risk, higher = earlier event), via Bundle.predict."""
        from chimera_surv.bundle import ModalityInputs
        from chimera_surv.readers.clinical import parse_clinical
        from train.table import _plain

        self._check_fitted()
        frame = _frame(X)
        missing = [c for c in self.feature_names_in_ if c not in frame.columns]
        if missing:
            raise ValueError(f"X lacks the column(s) {missing[:5]} the model was fitted with")
        schema = self.bundle_.clinical_schema
        risks = [self.bundle_.predict(ModalityInputs(clinical=parse_clinical(
            {k: _plain(v) for k, v in row.items()}, schema))).risk for row in frame.to_dict(orient="records")]
        return np.asarray(risks, dtype=np.float64)

    def predict_survival_function(self, X: Any, return_array: bool = False) -> np.ndarray:
        """S(t) per patient: StepFunctions (sksurv's convention), or an (n, len(unique_times_)) array."""
        from sksurv.functions import StepFunction

        self._check_fitted()
        hazard_ratio = np.exp(self.survival_["coef"] * self.predict(X))
        baseline = np.asarray(self.survival_["baseline"])
        if return_array:
            return np.power(baseline[None, :], hazard_ratio[:, None])
        return np.array([StepFunction(x=self.unique_times_, y=np.power(baseline, r)) for r in hazard_ratio],
                        dtype=object)

    def score(self, X: Any, y: Any) -> float:
        """Harrell's C-index of predict(X) against y."""
        from sksurv.metrics import concordance_index_censored

        time, event = survival_target(y)
        return float(concordance_index_censored(event.astype(bool), time, self.predict(X))[0])

    # ------------------------------------------------------------------------------------------------ files
    def save(self, folder: Path | str) -> Path:
        """The bundle the container loads (bundle.json + weights.safetensors) plus estimator.json."""
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in self._files.items():
            (folder / name).write_bytes(data)
        state = {"params": self.get_params(), "survival": self.survival_,
                 "feature_names": [str(c) for c in self.feature_names_in_]}
        (folder / ESTIMATOR_JSON).write_text(json.dumps(state, default=str))
        return folder

    @classmethod
    def load(cls, folder: Path | str) -> ChimeraSurvival:
        folder = Path(folder)
        state = json.loads((folder / ESTIMATOR_JSON).read_text())
        params = {k: v for k, v in state["params"].items() if k in cls._get_param_names()}
        est = cls(**params)
        est._files = {p.name: p.read_bytes() for p in sorted(folder.iterdir())
                      if p.is_file() and p.name != ESTIMATOR_JSON}
        est.survival_ = state["survival"]
        est.unique_times_ = np.asarray(state["survival"]["times"])
        est.feature_names_in_ = np.asarray(state["feature_names"], dtype=object)
        est.n_features_in_ = len(state["feature_names"])
        est._load_bundle()
        return est

    def __getstate__(self) -> dict[str, Any]:  # the bundle is rebuilt from its bytes (no pickled model objects)
        return {k: v for k, v in self.__dict__.items() if k != "bundle_"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "_files" in state:
            self._load_bundle()


def _close_logs(work: Path) -> None:
    """Drop the file handlers `Run` attached for this fit's work folder (many fits would otherwise leak them)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).is_relative_to(work):
            root.removeHandler(handler)
            handler.close()
