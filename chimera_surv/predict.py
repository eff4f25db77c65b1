"""One case end to end, with the fallback chain that makes every job end with a finite number.

full bundle → bundle without a modality whose input does not fit it (bundle.InputMismatch) → clinical prior → task
constant. A bundle that fails at load (validated there) or for any other reason while predicting is marked broken
and never rerun on fewer inputs: its answer would come from a broken model with valid inputs dropped.
Each step down logs one structured `DEGRADED {...}` line naming the stage and the cause. Modules that touch
optional heavy dependencies (slides, MRI, torch) are imported inside the step that needs them, so a broken
library costs that modality, not the case.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from chimera_surv.case import Case
from chimera_surv.errors import describe
from chimera_surv.gc import finite_output, read_case
from chimera_surv.tasks import Task

log = logging.getLogger("chimera_surv.predict")


@dataclass
class Prediction:
    """The value written to /output plus where it came from."""

    task: Task
    value: float
    source: str  # "bundle:<task>", "prior:<name>" or "fallback:constant"
    used: list[str] = field(default_factory=list)
    degraded: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    case_id: str | None = None
    # --explain: run by the caller after the output is written (`explain_after_output`), never before it
    explanation: Callable[[Any], None] | None = field(default=None, repr=False)
    # what the number means (chimera_surv.meaning.describe): S(t) at the bundle's horizons, median, model
    details: dict[str, Any] = field(default_factory=dict)

    def provenance(self) -> str:
        used = "+".join(self.used) if self.used else "-"
        return f"{self.source}[{used}]"


class DegradedLog:
    """Collects and logs the structured DEGRADED lines of one case."""

    def __init__(self) -> None:
        self.entries: list[dict[str, str]] = []

    def __call__(self, stage: str, cause: object, action: str) -> None:
        entry = {"stage": stage, "cause": str(cause)[:500], "action": action}
        self.entries.append(entry)
        log.warning("DEGRADED %s", json.dumps(entry, sort_keys=True))


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children (ru_maxrss is KiB on Linux)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def attempt(degraded: DegradedLog, stage: str, action: str, fn: Callable[[], Any], reading: str = "") -> Any:
    """Run one step; on any exception log DEGRADED and return None (the caller treats None as 'missing').

    `reading` names what the step was reading (files and sizes), so the line says what failed, not only how; an
    exception with a `source_file` (e.g. a corrupt encoder weight file) names that file instead, not the inputs.
    """
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the point is that nothing escapes a case
        reading = str(getattr(exc, "source_file", None) or reading)
        label = reading if len(reading) <= 240 else reading[:237] + "..."  # the cause must survive the 500 cap
        degraded(stage, (f"reading {label}: " if label else "") + describe(exc), action)
        return None


def files_label(paths: list[Path | None]) -> str:
    """`name (size)` for each file, e.g. `a.tif (12.3 MB), a_mask.tif (0.2 MB)`: what a DEGRADED line names."""
    parts = []
    for path in paths:
        if path is None:
            continue
        try:
            size = f"{path.stat().st_size / 1e6:.1f} MB"
        except OSError:
            size = "unreadable"
        parts.append(f"{path.name} ({size})")
    return ", ".join(parts)


def parse_clinical_record(case: Case, schema: Any, degraded: DegradedLog) -> Any:
    """The clinical record; content that cannot be parsed at all gives an empty record (every value missing)."""
    from chimera_surv.readers.clinical import parse_clinical

    if case.clinical is None:
        degraded("clinical", "no clinical data in the case", "clinical values treated as missing")
    try:
        record = parse_clinical(case.clinical, schema)
    except Exception as exc:  # noqa: BLE001 - e.g. RecursionError on absurd nesting: costs clinical values only
        degraded("clinical", f"reading the clinical JSON: {describe(exc)}", "clinical values treated as missing")
        record = parse_clinical(None, schema)
    if record.problems:  # a value lost: the prediction rests on an imputed value
        degraded("clinical", "; ".join(record.issues), f"{len(record.problems)} value(s) treated as missing and "
                 f"imputed: {', '.join(sorted(record.problems))}")
    elif record.issues:  # e.g. a number given as text, a key in other case: read, nothing imputed, not degraded
        note = {"stage": "clinical", "cause": "; ".join(record.issues)[:500], "action": "read; no value imputed"}
        log.info("NOTE %s", json.dumps(note, sort_keys=True))
    return record


def modality_inputs(case: Case, bundle: Any, record: Any, degraded: DegradedLog,
                    model_dir: Path, cache_dir: Path | None, device: str | None, clock: Any = None) -> Any:
    """Compute each modality the bundle can use; a failure drops that modality only.

    `clock` (deadline.CaseClock; None = no limit): the slides stop at its slide deadline, and RNA and MRI start
    only if their estimated cost fits before the time kept for the fusion and the output.
    """
    from chimera_surv.bundle import ModalityInputs
    from chimera_surv.deadline import RNA_PRIOR_S, CaseClock, mri_estimate_s

    clock = CaseClock() if clock is None else clock

    inputs = ModalityInputs(wsi=None, clinical=record, rna=None, mri=None)
    wanted = set(bundle.modalities)
    if "wsi" in wanted:
        slides = [s for s in case.slides if s.wsi is not None or s.features is not None]
        if not slides:
            degraded("wsi", "no readable slide in the case", "predicting without slides")
        else:
            def slide_bag() -> Any:
                from chimera_surv.features import extract_case_bag
                from chimera_surv.readers.precomputed import merge_parts, precomputed_parts

                # a slide given as precomputed `.h5` features is read from that file and never decoded
                parts, to_decode = precomputed_parts(slides, bundle.recipe, lambda c, a: degraded("wsi", c, a))
                extracted = None
                if to_decode:
                    extracted, issues = extract_case_bag(to_decode, bundle.recipe, model_dir / "encoders",
                                                         cache_dir=cache_dir, device=device,
                                                         deadline=clock.slides())
                    for issue in issues:
                        degraded("wsi", issue, "continued with the remaining patches")
                bag = merge_parts(parts, extracted)
                if len(bag.features) == 0:
                    raise ValueError("the deadline left no time to encode a patch" if extracted is not None and
                                     extracted.meta.get("stopped") == "deadline" else "no tissue patch in any slide")
                return bag

            inputs.wsi = attempt(degraded, "wsi", "predicting without slides", slide_bag,
                                 reading=files_label([p for s in slides for p in (s.features or s.wsi, s.mask)]))
    if "rna" in wanted:
        if case.rna is None:
            degraded("rna", "no RNA data in the case", "predicting without RNA")
        elif not clock.fits(RNA_PRIOR_S, clock.output_keep()):
            degraded("rna", clock.shortfall("RNA", RNA_PRIOR_S, clock.output_keep()), "predicting without RNA")
        else:
            def rna_vector() -> Any:
                from chimera_surv.readers.rna import parse_rna

                vector = parse_rna(case.rna, bundle.genes)
                if vector.report.present == 0:
                    raise ValueError("no usable gene value: " + "; ".join(vector.report.issues))
                if vector.report.issues:
                    degraded("rna", "; ".join(vector.report.issues), "unusable genes imputed with the training mean")
                return vector

            inputs.rna = attempt(degraded, "rna", "predicting without RNA", rna_vector, reading="the RNA JSON")
    if "slide_embedding" in wanted:
        if not case.slide_embeddings:
            degraded("slide_embedding", "no slide embedding in the case", "predicting without slide embeddings")
        else:
            def slide_embedding() -> Any:
                from chimera_surv.readers.precomputed import bundle_slide_embedding

                return bundle_slide_embedding(case.slide_embeddings, bundle)

            inputs.slide_embedding = attempt(degraded, "slide_embedding", "predicting without slide embeddings",
                                             slide_embedding, reading=files_label(list(case.slide_embeddings)))
    if "mri" in wanted:
        if case.mri is not None and case.mri.features is not None:  # a precomputed vector: no volume is read
            def precomputed_mri() -> Any:
                from chimera_surv.readers.precomputed import bundle_mri_vector

                return bundle_mri_vector(case.mri.features, bundle)

            inputs.mri = attempt(degraded, "mri", "predicting without MRI (its volumes are not read instead)",
                                 precomputed_mri, reading=files_label([case.mri.features]))
        elif case.mri is None or case.mri.t2 is None:
            degraded("mri", "no T2 MRI in the case", "predicting without MRI")
        elif not clock.fits(mri_cost := mri_estimate_s([case.mri.t2, case.mri.adc, case.mri.hbv, case.mri.mask],
                                                       bundle.mri_kind), clock.output_keep()):
            degraded("mri", clock.shortfall("MRI", mri_cost, clock.output_keep()), "predicting without MRI")
        else:
            def mri_vector() -> Any:
                from chimera_surv.mri_features import mri_features

                vector, names = mri_features(case.mri, kind=bundle.mri_kind, encoder_root=model_dir / "encoders")
                bad = [name for name, value in zip(names, vector) if not math.isfinite(float(value))]
                if len(bad) == len(names):
                    raise ValueError(f"every one of the {len(names)} MRI features is non-finite")
                if bad:
                    degraded("mri", f"{len(bad)} non-finite MRI features ({', '.join(bad[:5])})",
                             "those features imputed with the training mean")
                return vector

            inputs.mri = attempt(degraded, "mri", "predicting without MRI", mri_vector,
                                 reading=files_label([case.mri.t2, case.mri.adc, case.mri.hbv, case.mri.mask]))
    return inputs


def _meaning(bundle: Any, value: float, risk: float, used: list[str]) -> dict[str, Any]:
    """S(t) at the bundle's horizons, the median time and the model, for the RESULT line; never raises."""
    from chimera_surv.meaning import describe as meaning

    try:
        doc = meaning(bundle, value, risk, used)
    except Exception as exc:  # noqa: BLE001 - an explanation of the number must never cost the number
        return {"survival": f"not available: {describe(exc)}"}
    return {k: doc[k] for k in ("survival", "median_months", "max_follow_up_months", "model") if k in doc}


def task_bundle_dir(model_dir: Path, task: Any) -> Path:
    """The task's bundle folder: `<model>/<task name>` (the container's layout), else `<model>` itself when it is a
    bundle (a user pointing --model at what `python -m train` wrote), else the one bundle under `<model>` made for
    this task; the layout's name when none fits (the caller then says there is no bundle there)."""
    from chimera_surv.model_dir import BUNDLE_JSON, bundle_dirs

    named = Path(model_dir) / task.name
    if (named / BUNDLE_JSON).is_file():
        return named
    if (Path(model_dir) / BUNDLE_JSON).is_file():
        return Path(model_dir)
    mine = []
    for folder in bundle_dirs(model_dir):
        try:
            if json.loads((folder / BUNDLE_JSON).read_text()).get("task_id") == task.id:
                mine.append(folder)
        except (OSError, ValueError):
            continue
    return mine[0] if len(mine) == 1 else named


def bundle_prediction(case: Case, model_dir: Path, cache_dir: Path | None, device: str | None,
                      degraded: DegradedLog, explain_dir: Path | None = None, clock: Any = None,
                      later: list[Callable[[Any], None]] | None = None,
                      details: dict[str, Any] | None = None) -> tuple[float, list[str]] | None:
    """(value, modalities used) from the task's bundle, or None to fall back to the prior.

    With `explain_dir`, the explanation is appended to `later` (run after the output is written), not run here.
    `details` (a dict, when given) receives what the number means: S(t) at the bundle's horizons, the median time,
    the model and the modalities (chimera_surv.meaning.describe); a failure there never costs the value.
    """
    from chimera_surv.bundle import MODALITY_ORDER as MODALITIES
    from chimera_surv.bundle import BundleError, InputMismatch, load_bundle

    folder = task_bundle_dir(model_dir, case.task)
    try:
        bundle = load_bundle(folder, case.task)
    except BundleError as exc:
        degraded("bundle", exc, "using the clinical prior")
        return None
    if bundle is None:
        degraded("bundle", f"no bundle at {folder} (--model holds one folder per task, named prostate-bcr, "
                 "bladder-brs or nmibc-recurrence, or is a bundle folder itself)", "using the clinical prior")
        return None
    record = attempt(degraded, "clinical", "predicting without clinical data",
                     lambda: parse_clinical_record(case, bundle.clinical_schema, degraded))
    inputs = modality_inputs(case, bundle, record, degraded, model_dir, cache_dir, device, clock)
    inputs_now = inputs
    for _ in range(len(MODALITIES) + 1):  # each retry drops one modality: bounded
        try:
            result = bundle.predict(inputs_now)
            value = finite_output(result.value, case.task)
            if explain_dir is not None and later is not None:  # --explain: after the output, never failing it
                later.append(partial(explain, case, bundle, inputs_now, value, list(result.used), explain_dir))
            if details is not None:
                details.update(_meaning(bundle, value, result.risk, list(result.used)))
            return value, list(result.used)
        except InputMismatch as exc:  # one modality's input does not fit: the bundle is healthy, drop that input
            if getattr(inputs_now, exc.modality, None) is None:  # nothing left to drop: the bundle is at fault
                degraded("model", f"the bundle in {bundle.path} failed while predicting: {describe(exc)}",
                         "bundle marked broken; using the clinical prior")
                return None
            degraded("model", f"predicting with the bundle in {bundle.path}: {describe(exc)}",
                     f"retrying without {exc.modality}")
            inputs_now = replace(inputs_now, **{exc.modality: None})
        except Exception as exc:  # noqa: BLE001 - the bundle itself failed: marked broken, never rerun
            degraded("model", f"the bundle in {bundle.path} failed while predicting: {describe(exc)}",
                     "bundle marked broken; using the clinical prior")
            return None
    return None


def explain(case: Case, bundle: Any, inputs: Any, value: float, used: list[str], out_dir: Path,
            clock: Any = None) -> None:
    """Slide heatmaps and a case page (chimera_surv/explain.py); any failure is one log line, nothing more.
    `clock` (deadline.CaseClock) bounds it: a step that does not fit before the end of the case is skipped."""
    try:
        from chimera_surv.explain import explain_case

        page = explain_case(bundle, inputs, case.slides, Path(out_dir), str(case.case_id or "case"),
                            {"task": case.task.name, "prediction": value, "modalities used": used}, clock=clock)
        log.info("EXPLAIN %s", json.dumps({"page": str(page) if page else None}))
    except Exception as exc:  # noqa: BLE001 - an explanation is never worth a case
        log.warning("EXPLAIN failed (the prediction is unaffected): %s: %s", type(exc).__name__, exc)


def prior_prediction(case: Case, degraded: DegradedLog) -> tuple[float, str] | None:
    from chimera_surv.priors import prior_for_task
    from chimera_surv.readers.clinical import load_schema

    def run() -> tuple[float, str]:
        record = parse_clinical_record(case, load_schema(case.task.id), degraded)
        prior = prior_for_task(case.task)
        output = prior.predict(record)
        return finite_output(output.value, case.task), getattr(prior, "name", type(prior).__name__)

    return attempt(degraded, "prior", "using the task constant", run, reading="the clinical JSON")


def explain_after_output(prediction: Prediction | None, clock: Any = None) -> None:
    """--explain, called once the output file is written; bounded by `clock`, never failing the case."""
    if prediction is not None and prediction.explanation is not None:
        prediction.explanation(clock)


def predict_case(input_dir: Path | str, model_dir: Path | str, *, cache_dir: Path | None = None,
                 device: str | None = None, explain_dir: Path | None = None, clock: Any = None) -> Prediction:
    """Read, featurise, predict and calibrate one case.

    `clock` (deadline.CaseClock; None = no limit) bounds the slides, RNA and MRI. With `explain_dir` the
    explanation is not run here: it is `prediction.explanation`, for after the output is written
    (`explain_after_output`).

    Raises only when the case cannot be read at all (`UnknownTaskError`, or an input tree that cannot be listed);
    inference.run_case then writes every task's constant.
    """
    start = time.perf_counter()
    degraded = DegradedLog()
    case = read_case(input_dir)
    for issue in case.issues:
        degraded("input", issue, "continued")
    task = case.task
    model_dir = Path(model_dir)

    prediction: Prediction | None = None
    later: list[Callable[[Any], None]] = []
    details: dict[str, Any] = {}
    result = attempt(degraded, "bundle", "using the clinical prior",
                     lambda: bundle_prediction(case, model_dir, cache_dir, device, degraded, explain_dir, clock,
                                               later, details),
                     reading=f"the bundle in {model_dir / task.name}")
    if result is not None:
        value, used = result
        prediction = Prediction(task, value, f"bundle:{task.name}", used, explanation=later[0] if later else None,
                                details=details)
    else:
        prior = prior_prediction(case, degraded)
        if prior is not None:
            prediction = Prediction(task, prior[0], f"prior:{prior[1]}", ["clinical"])
    if prediction is None:
        degraded("fallback", "no model and no prior could predict", f"writing the task constant {task.fallback_value}")
        prediction = Prediction(task, float(task.fallback_value), "fallback:constant")

    assert math.isfinite(prediction.value)
    prediction.degraded = degraded.entries
    prediction.case_id = case.case_id
    prediction.seconds = time.perf_counter() - start
    prediction.peak_rss_mb = peak_rss_mb()
    return prediction
