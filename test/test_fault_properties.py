"""Property-based fault suite (hypothesis): generated broken inputs, model files, tables, `.h5` features and configs.

The contract, whatever the input: a finite output in the right file, or a one-line refusal that names the file
and the cause, within a time bound, never a hang. Each property runs a bounded number of examples in `make test`
(profile `ci`: derandomised, so a run is reproducible) and many more under `CHIMERA_FAULTS=deep` (`make test-slow`).
The time bound is a SIGALRM in the test's own (main) thread: a hang fails the example instead of the suite.
Shrunk failures found here are kept as explicit regression tests (test_model_file_faults.py, test_table_faults.py,
test_config_strict.py) or as `@example`s below.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from fault_builders import GENES, classical_bundle, network_bundle
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_input_faults import RELATIVE, entry

from chimera_surv.bundle import BundleError, ModalityInputs, load_bundle
from chimera_surv.tasks import REQUIRED_SOCKETS, TASKS

DEEP = os.environ.get("CHIMERA_FAULTS") == "deep"
FAULTS = settings(max_examples=300 if DEEP else 20, deadline=None, derandomize=not DEEP, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                         HealthCheck.function_scoped_fixture])
TIME_BOUND_S = 60


@contextlib.contextmanager
def time_bound(seconds: float = TIME_BOUND_S):
    """Fail (TimeoutError) instead of hanging; also asserts the wall time."""
    def expire(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.perf_counter()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.perf_counter() - started < seconds


def one_line(message: str, names: str) -> None:
    assert "\n" not in message.strip(), message
    assert names in message, f"{names!r} not named in {message!r}"


# -- generators ------------------------------------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats() | st.text(max_size=12)
           | st.sampled_from(["NaN", "inf", "-1e309", "1e308", "", " ", "yes", "Male", "BRS1", "TaHG"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
CLINICAL_KEYS = ["age", "sex", "stage", "BRS", "no_instillations", "smoking", "tumor", "grade", "EORTC"]
clinical_json = json_values | st.dictionaries(st.sampled_from(CLINICAL_KEYS), json_values, max_size=9)
rna_json = json_values | st.dictionaries(st.sampled_from([*GENES, "A1BG", "x"]), scalars, max_size=14)


def file_content(values: st.SearchStrategy) -> st.SearchStrategy:
    """JSON text of a value, raw bytes, or no file at all."""
    return (values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=80)
            | st.just(None) | st.just(b"\xef\xbb\xbf{\"age\": 70}"))


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    return {"classical": classical_bundle(root / "classical", rna=True), "network": network_bundle(root / "network")}


# -- 1. whole cases: inputs.json, clinical and RNA JSON, slide bytes --------------------------------------------


@FAULTS
@given(inputs=st.sampled_from(["valid", "missing"]) | st.binary(max_size=60) | json_values,
       clinical=file_content(clinical_json), rna=file_content(rna_json),
       slide=st.binary(max_size=40) | st.just(None), kind=st.sampled_from(["classical", "network"]),
       task_id=st.sampled_from([3, 3, 1, 2]))
@example(inputs="valid", clinical=b"NaN", rna=b'{"G0": 1e308, "G1": -1e308}', slide=b"", kind="network", task_id=3)
@example(inputs="missing", clinical=None, rna=None, slide=b"", kind="classical", task_id=3)  # Task 2's layout too
def test_any_case_gives_a_finite_output_in_the_right_file(bundles, inputs, clinical, rna, slide, kind, task_id):
    """Task 3 has a bundle (classical or network members); Tasks 1 and 2 answer from their priors."""
    import inference

    task = TASKS[3]
    with tempfile.TemporaryDirectory(prefix="b1-case-") as tmp:
        case, out, model = Path(tmp, "input"), Path(tmp, "output"), Path(tmp, "model")
        shutil.copytree(bundles[kind], model / task.name)
        case.mkdir()
        out.mkdir()
        slugs = sorted(REQUIRED_SOCKETS[task_id])
        entries = [entry(slug, image_name=f"{slug}.tif" if not RELATIVE[slug].endswith(".json") else None)
                   for slug in slugs]
        clinical_slug = next(slug for slug in slugs if "clinical" in slug)
        contents = {clinical_slug: clinical, "bulk-rna-seq-bladder-cancer": rna}
        for item in entries:
            slug, relative = item["interface"]["slug"], Path(case, item["interface"]["relative_path"])
            if slug in contents:
                if contents[slug] is not None:
                    relative.write_bytes(contents[slug])
            elif slide is not None:
                relative.mkdir(parents=True, exist_ok=True)
                (relative / f"{slug}.tif").write_bytes(slide)
        if inputs == "valid":
            (case / "inputs.json").write_text(json.dumps(entries))
        elif inputs != "missing":
            (case / "inputs.json").write_bytes(inputs if isinstance(inputs, bytes) else json.dumps(inputs).encode())
        with time_bound():
            prediction = inference.run_case(case, out, model)
        # The right file: the task's own when its clinical file (a socket of that task only) is there; with slides
        # alone a bladder layout is Task 2's or 3's, and a case whose task cannot be told answers every task's file.
        if clinical is not None:
            assert prediction is None or prediction.task.id == task_id
        for answered in (TASKS.values() if prediction is None else [prediction.task]):
            value = json.loads((out / answered.output_file).read_text())
            assert isinstance(value, float) and math.isfinite(value) and value >= 0
        assert sorted(p.name for p in out.iterdir()) == sorted(
            t.output_file for t in (TASKS.values() if prediction is None else [prediction.task]))


# -- 2. bundle files: bundle.json fields and safetensors arrays, classical and network members ---------------------


def _leaf_paths(doc, prefix=()):
    """Every (path) to a value in the JSON document, containers included, depth-limited."""
    out = [prefix] if prefix else []
    if len(prefix) < 6:
        items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
        for key, value in items:
            out += _leaf_paths(value, (*prefix, key))
    return out


def _mutate_array(arr: np.ndarray, how: str, index: int, value) -> np.ndarray:
    arr = np.array(arr)
    if how == "truncate":
        return arr.reshape(-1)[:-1] if arr.size else arr
    if how == "reshape":
        return arr.reshape(1, -1)
    if how == "dtype":
        return arr.astype(np.float64 if arr.dtype.kind in "iu" else np.int64)
    if arr.size:
        flat = arr.reshape(-1)
        with np.errstate(invalid="ignore", over="ignore"):
            flat[index % arr.size] = np.asarray(value).astype(arr.dtype) if arr.dtype.kind in "iu" and \
                not math.isfinite(value) else value
    return arr


array_values = st.integers(-12, 40) | st.sampled_from([-1, -2, 2**31 - 1, -(2**31)]) | st.floats(width=32)


@FAULTS
@given(data=st.data(), kind=st.sampled_from(["classical", "network"]), where=st.sampled_from(["array", "doc"]))
def test_a_mutated_bundle_is_refused_at_load_or_predicts_finite(bundles, data, kind, where):
    from fault_builders import clinical_values, rewrite
    from safetensors.numpy import load

    from chimera_surv.features import Bag
    from chimera_surv.readers.clinical import parse_clinical
    from chimera_surv.readers.rna import parse_rna

    with tempfile.TemporaryDirectory(prefix="b1-bundle-") as tmp:
        path = Path(shutil.copytree(bundles[kind], Path(tmp, "bundle")))
        if where == "array":
            keys = sorted(load((path / "weights.safetensors").read_bytes()))
            key = data.draw(st.sampled_from(keys), label="key")
            how = data.draw(st.sampled_from(["value", "value", "value", "truncate", "reshape", "dtype"]), label="how")
            index, value = data.draw(st.integers(0, 10**6), label="index"), data.draw(array_values, label="value")
            rewrite(path, arrays=lambda a: a.__setitem__(key, _mutate_array(a[key], how, index, value)))
        else:
            doc = json.loads((path / "bundle.json").read_text())
            target = data.draw(st.sampled_from([p for p in _leaf_paths(doc) if p[0] != "weights_sha256"]),
                               label="path")
            value = data.draw(json_values, label="value")

            def edit(document):
                node = document
                for part in target[:-1]:
                    node = node[part]
                node[target[-1]] = value

            rewrite(path, doc=edit)
        with time_bound():
            try:
                bundle = load_bundle(path)
            except BundleError as err:
                one_line(str(err), str(path))
                return
            rng = np.random.default_rng(0)
            record = parse_clinical(clinical_values(rng), bundle.clinical_schema)
            bag = Bag(rng.normal(size=(4, 64)).astype(np.float32), np.zeros((4, 3), np.int64))
            rna = parse_rna({g: float(rng.uniform(0, 20)) for g in GENES}, bundle.genes) if bundle.genes else None
            for inputs in (ModalityInputs(wsi=bag, clinical=record, rna=rna), ModalityInputs(clinical=record)):
                try:
                    result = bundle.predict(inputs)
                except Exception as err:
                    if where == "array" and kind == "classical" and ".pred." in key:
                        raise AssertionError(f"a predictor array fault passed the load validation: {err!r}") \
                            from err
                    continue
                assert math.isfinite(result.value) and math.isfinite(result.risk)


# -- 3. tables ---------------------------------------------------------------------------------------------------

clean_cell = st.text(st.characters(categories=("L", "N"), max_codepoint=0x2FF), min_size=1, max_size=8)
dirty_cell = st.text(max_size=20) | st.sampled_from(["\x00", "é", "a;b", "\t", "x" * 20_000, "\r", "\u2028"])


@FAULTS
@given(n_columns=st.integers(1, 5), data=st.data(),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "latin-1", "utf-16"]),
       delimiter=st.sampled_from([",", ";", "\t"]), quotes=st.booleans())
def test_any_table_keeps_its_clean_rows_or_is_refused_in_one_line(n_columns, data, encoding, delimiter, quotes):
    from chimera_surv.readers.table import TableError, read_table

    header = ["case_id"] + [f"c{k}" for k in range(n_columns)]
    rows, clean_ids = [], []
    for k in range(data.draw(st.integers(0, 8), label="n_rows")):
        if data.draw(st.booleans(), label="clean"):
            cells = [f"id{k}"] + [data.draw(clean_cell) for _ in range(n_columns)]
            clean_ids.append(f"id{k}")
        else:
            n = data.draw(st.integers(0, n_columns + 3))
            cell = dirty_cell if quotes else dirty_cell.map(lambda s: s.replace('"', ""))
            cells = [f"bad{k}"] + [data.draw(cell) for _ in range(n)]
            if not quotes:  # without quotes a dirty row can only cost itself when it never holds the delimiter,
                cells = [c.replace(delimiter, " ").replace("\n", " ").replace("\r", " ") for c in cells]
        rows.append(delimiter.join(cells))
    text = delimiter.join(header) + "\n" + "\n".join(rows) + "\n"
    with tempfile.TemporaryDirectory(prefix="b1-table-") as tmp:
        path = Path(tmp, "cohort.csv")
        path.write_bytes(text.encode(encoding, errors="replace"))
        with time_bound(30):
            try:
                frame, problems = read_table(path, "case_id")
            except TableError as err:
                one_line(str(err), str(path))
                return
        for problem in problems:
            one_line(problem, str(path))
        assert all(isinstance(v, str) or (isinstance(v, float) and math.isnan(v)) for v in frame.to_numpy().ravel())
        assert frame["case_id"].is_unique
        if not quotes and encoding in ("utf-8", "utf-8-sig", "utf-16"):
            assert set(clean_ids) <= set(frame["case_id"])  # a dirty row never costs a clean one


# -- 4. .h5 patch features -----------------------------------------------------------------------------------------

dims = st.lists(st.integers(0, 6), min_size=0, max_size=3).map(tuple)
h5_dtypes = st.sampled_from(["f4", "f8", "i4", "u1", "f2", "bool", "S3"])


@FAULTS
@given(features=st.none() | st.tuples(dims, h5_dtypes, st.booleans(), st.booleans()),
       coords=st.none() | st.tuples(dims, h5_dtypes, st.booleans(), st.booleans()),
       huge=st.booleans(), attrs=st.dictionaries(st.sampled_from(["encoder", "target_mpp", "patch_size"]),
                                                st.integers(-5, 5) | st.text(st.characters(exclude_characters="\x00"),
                                                                             max_size=5), max_size=3),
       garbage=st.none() | st.binary(max_size=100))
def test_any_h5_reads_as_a_finite_bag_or_is_refused_naming_the_file(features, coords, huge, attrs, garbage):
    from chimera_surv.readers.precomputed import read_h5

    with tempfile.TemporaryDirectory(prefix="b1-h5-") as tmp:
        path = Path(tmp, "slide.h5")
        if garbage is not None:
            path.write_bytes(garbage)
        else:
            with h5py.File(path, "w") as handle:
                for name, spec in (("features", features), ("coords", coords)):
                    if spec is None:
                        continue
                    shape, dtype, nan, group = spec
                    if group:
                        handle.create_group(name)
                    elif huge and name == "features":
                        handle.create_dataset(name, shape=(50_000_000, 64), dtype="f4", chunks=(4096, 64))
                    else:
                        values = np.ones(shape, dtype=dtype)
                        if nan and dtype.startswith("f") and values.size:
                            values.reshape(-1)[0] = np.nan
                        handle.create_dataset(name, data=values)
                    if name in handle:
                        handle[name].attrs.update(attrs)
        with time_bound(30):
            try:
                item = read_h5(path)
            except ValueError as err:
                one_line(str(err), str(path))
                return
        assert item.features.ndim == 2 and item.features.dtype == np.float32 and np.isfinite(item.features).all()
        assert item.coords.shape == (len(item.features), 2)


# -- 5. YAML configs -----------------------------------------------------------------------------------------------

SECTION_KEYS = {"train": ["epochs", "lr", "batch_size", "modality_dropout", "seeds", "average"],
                "protocol": ["folds", "repeats", "inner_val", "cohort_holdout"],
                "preprocess": ["rna", "clinical"], "cohort": ["root", "labels", "table", "id"],
                "recipe": ["encoder", "target_mpp", "patch_size"], "task": [], "seed": [], "model": ["family"]}
yaml_scalars = st.sampled_from(["yes", "no", "on", "~", "null", "1e-3", "1.0e-3", "0x1F", ".inf", "-.nan", "'5'",
                                "5", "5.0", "-3", "[1, 2]", "{a: 1}", "auto", "&a 1", "*a", "!!python/object:x {}",
                                "\"\\u0000\"", "2026-12-03", "|", "'"])


@FAULTS
@given(data=st.data(), duplicate=st.booleans(), garbage=st.none() | st.text(max_size=80))
def test_any_config_loads_strictly_or_is_refused_in_one_line(data, duplicate, garbage):
    from train.config import ConfigError, load_config

    lines = []
    for section in data.draw(st.lists(st.sampled_from(sorted(SECTION_KEYS)), max_size=4), label="sections"):
        keys = SECTION_KEYS[section]
        if not keys:
            lines.append(f"{section}: {data.draw(yaml_scalars)}")
            continue
        lines.append(f"{section}:")
        for key in data.draw(st.lists(st.sampled_from(keys), max_size=3, unique=not duplicate), label=section):
            lines.append(f"  {key}: {data.draw(yaml_scalars)}")
    if duplicate and lines:
        lines.append(data.draw(st.sampled_from(lines), label="again"))
    text = garbage if garbage is not None else "\n".join(lines) + "\n"
    with tempfile.TemporaryDirectory(prefix="b1-config-") as tmp:
        path = Path(tmp, "config.yaml")
        path.write_text(text)
        with time_bound(30):
            try:
                config = load_config(path)
            except ConfigError as err:
                one_line(str(err), str(path))
                return
    train = config["train"]
    for key in ("epochs", "batch_size", "seeds"):
        assert type(train[key]) is int and train[key] >= 1
    assert type(config["protocol"]["cohort_holdout"]) is bool and isinstance(train["lr"], float)
