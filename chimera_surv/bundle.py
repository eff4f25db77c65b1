"""A trained model bundle: `bundle.json` + `weights.safetensors`, written by train/ and read by predict.py.

Why a folder of JSON + safetensors: nothing from /opt/ml/model is ever unpickled, and a bundle is fully described by
data (network configs are registry configs, fitted preprocessing is JSON), so it is rebuilt without code edits.

`bundle.json` holds the format version, task, modalities, the feature recipe, the MRI feature kind, the clinical
schema (embedded, so inference never depends on resources/ matching), the gene list, one entry per ensemble member
(network config, fitted preprocessing, weight-key prefix, risk standardisation), the calibration and training
metadata. `weights.safetensors` holds every member's state dict under its prefix, in sorted key order.

A member's `kind` is `network` (a registry-built network; the default, so older bundles load unchanged) or
`classical` (chimera_surv/classical: design blocks + a linear or tree predictor, arrays under the member's prefix).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chimera_surv.bundle_checks import check_classical_member, finite_field, input_dims_field
from chimera_surv.errors import describe

if TYPE_CHECKING:  # the heavy modules are imported lazily so that `import chimera_surv.bundle` stays cheap
    import torch

    from chimera_surv.features import Bag, FeatureRecipe
    from chimera_surv.readers.clinical import ClinicalRecord, ClinicalSchema
    from chimera_surv.readers.rna import RNAVector

FORMAT_VERSION = 1
BUNDLE_JSON = "bundle.json"
WEIGHTS_FILE = "weights.safetensors"
MODALITY_ORDER = ("wsi", "mri", "clinical", "rna", "slide_embedding")  # slide_embedding: one vector per slide


class BundleError(RuntimeError):
    """A bundle exists but cannot be used (broken file, wrong shapes, unusable inputs)."""


class NoUsableModality(BundleError):
    """Every modality the bundle knows is missing: the caller should fall back to a prior."""


class InputMismatch(BundleError):
    """One modality's input does not fit the bundle (wrong width, non-finite after preprocessing): the bundle is
    healthy, so the caller may retry without that modality. Any other failure at predict time marks the bundle
    broken (predict.py then goes to the prior, never reruns it)."""

    def __init__(self, modality: str, message: str) -> None:
        super().__init__(message)
        self.modality = modality


@dataclass
class ModalityInputs:
    """One patient's parsed inputs; `None` means the modality is missing."""

    wsi: Bag | None = None
    clinical: ClinicalRecord | None = None
    rna: RNAVector | None = None
    mri: np.ndarray | None = None
    slide_embedding: np.ndarray | None = None  # a slide encoder's vector, the mean over the patient's slides


@dataclass
class BundlePrediction:
    """The calibrated value (months or probability), the ensemble risk it came from and the modalities used."""

    value: float
    risk: float
    used: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# Fitted preprocessing: one JSON dict per modality, restored by the owning class's from_dict.


def _restore_preprocessor(modality: str, state: dict[str, Any]) -> Any:
    from chimera_surv import preprocess

    classes = {"clinical": preprocess.ClinicalEncoder, "rna": preprocess.RNANormaliser,
               "mri": preprocess.Standardiser, "slide_embedding": preprocess.Standardiser}
    if modality not in classes:
        raise BundleError(f"no preprocessor for modality '{modality}'")
    return classes[modality].from_dict(state)


def encode_clinical_records(encoder: Any, records: list[ClinicalRecord]) -> np.ndarray:
    """Records → float32 (n, d). Shared by training and inference so both encode identically."""
    return np.asarray(encoder.transform(records), dtype=np.float32)


def encode_matrix(normaliser: Any, matrix: np.ndarray) -> np.ndarray:
    """A (n, G) matrix (RNA values or MRI features, NaN = missing) → float32 (n, d) through a fitted transform."""
    return np.asarray(normaliser.transform(np.asarray(matrix, dtype=np.float32)), dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Calibration: risks → months (km_quantile, …) or logits → probability (sigmoid, platt), all from CALIBRATIONS.


def build_calibration(state: dict[str, Any]) -> Any:
    """Rebuild a calibration from its JSON dict."""
    from chimera_surv.survival.calibration import calibration_from_dict

    return calibration_from_dict(state)


# ---------------------------------------------------------------------------------------------------------------
# One ensemble member (one fold model) and the bundle.


@dataclass
class Member:
    """One fold model: its network, fitted preprocessing and the affine map that puts its risks on a shared scale."""

    name: str
    network: Any  # SurvivalNetwork (nn.Module), in eval mode
    network_config: dict[str, Any]
    input_dims: dict[str, int]  # modality → input width after preprocessing
    preprocessors: dict[str, Any]
    risk_shift: float = 0.0
    risk_scale: float = 1.0

    def risk(self, batch: dict[str, torch.Tensor]) -> float:
        import torch

        with torch.no_grad():
            out = self.network(batch)
        raw = float(out["risk"].reshape(-1)[0])
        return (raw - self.risk_shift) / self.risk_scale


@dataclass
class ClassicalMember:
    """One fold's classical model (chimera_surv/classical) with its fitted preprocessing and risk standardisation."""

    name: str
    model: Any  # ClassicalModel
    input_dims: dict[str, int]
    preprocessors: dict[str, Any]
    risk_shift: float = 0.0
    risk_scale: float = 1.0

    def risk(self, vectors: dict[str, np.ndarray | None], wsi: np.ndarray | None) -> float:
        """A missing modality (None) enters as its training mean, the documented degraded path."""
        from chimera_surv.classical import pool_bag

        rows: dict[str, np.ndarray | None] = {}
        for modality in self.model.modalities:
            if modality == "wsi":
                pooled = pool_bag(wsi, self.model.pools) if wsi is not None else None
                rows["wsi"] = None if pooled is None else pooled[None]
                continue
            vector = vectors.get(modality)
            if vector is not None:
                vector = np.asarray(vector, dtype=np.float64).reshape(1, -1)
                if vector.shape[1] != self.input_dims[modality] or not np.isfinite(vector).all():
                    raise InputMismatch(modality, f"{modality} vector has shape {vector.shape} or non-finite values; "
                                      f"the member expects {self.input_dims[modality]} finite values")
            rows[modality] = vector
        raw = float(self.model.predict(rows)[0])
        return (raw - self.risk_shift) / self.risk_scale


@dataclass
class Bundle:
    """A loaded bundle. `predict` averages the members' standardised risks and calibrates the mean."""

    path: Path
    task_id: int
    modalities: list[str]
    recipe: FeatureRecipe | None
    mri_kind: str | None
    genes: list[str]
    clinical_schema: ClinicalSchema | None
    members: list[Member | ClassicalMember]
    calibration: Any
    output_kind: str
    meta: dict[str, Any]

    def predict(self, inputs: ModalityInputs) -> BundlePrediction:
        """Predict one patient; missing modalities are masked (present=False) in every member."""
        present = self._present(inputs)
        if not present:
            raise NoUsableModality(f"none of the bundle's modalities {self.modalities} is present")
        risks = [self._member_risk(member, inputs, present) for member in self.members]
        risk = float(np.mean(risks))
        if not math.isfinite(risk):
            raise BundleError(f"non-finite ensemble risk {risks}")
        value = float(np.asarray(self.calibration.predict(np.array([risk], dtype=np.float64))).reshape(-1)[0])
        if not math.isfinite(value):
            raise BundleError(f"calibration gave a non-finite value for risk {risk}")
        return BundlePrediction(value=value, risk=risk, used=[m for m in self.modalities if m in present])

    def _present(self, inputs: ModalityInputs) -> set[str]:
        present = set()
        if "wsi" in self.modalities and inputs.wsi is not None and len(inputs.wsi.features) > 0:
            present.add("wsi")
        if "clinical" in self.modalities and inputs.clinical is not None:
            present.add("clinical")
        if "rna" in self.modalities and inputs.rna is not None and np.isfinite(inputs.rna.values).any():
            present.add("rna")
        if "mri" in self.modalities and inputs.mri is not None and np.isfinite(np.asarray(inputs.mri)).any():
            present.add("mri")
        embedding = inputs.slide_embedding
        if "slide_embedding" in self.modalities and embedding is not None and np.isfinite(embedding).any():
            present.add("slide_embedding")
        return present

    def _member_risk(self, member: Member | ClassicalMember, inputs: ModalityInputs, present: set[str]) -> float:
        if isinstance(member, ClassicalMember):
            return member.risk(self._vectors(member, inputs, present),
                               inputs.wsi.features if "wsi" in present else None)
        return member.risk(self._batch(member, inputs, present))

    def _batch(self, member: Member, inputs: ModalityInputs, present: set[str]) -> dict[str, torch.Tensor]:
        """Encode each modality with the member's fitted preprocessing into the network's batch dict (B = 1)."""
        vectors = self._vectors(member, inputs, present)
        wsi = inputs.wsi.features if "wsi" in present else None
        return make_batch(member.input_dims, wsi=wsi, vectors=vectors)

    def _vectors(self, member: Member | ClassicalMember, inputs: ModalityInputs,
                 present: set[str]) -> dict[str, np.ndarray | None]:
        """Each present vector modality encoded with the member's fitted preprocessing; None when missing."""
        vectors: dict[str, np.ndarray | None] = {"clinical": None, "rna": None, "mri": None}
        if "clinical" in present:
            vectors["clinical"] = encode_clinical_records(member.preprocessors["clinical"], [inputs.clinical])[0]
        if "rna" in present:
            values = np.asarray(inputs.rna.values, dtype=np.float32).reshape(1, -1)
            if values.shape[1] != len(self.genes):
                raise InputMismatch("rna", f"RNA vector has {values.shape[1]} genes, the bundle expects {len(self.genes)}")
            vectors["rna"] = encode_matrix(member.preprocessors["rna"], values)[0]
        if "mri" in present:
            vectors["mri"] = encode_matrix(member.preprocessors["mri"], np.asarray(inputs.mri).reshape(1, -1))[0]
        if "slide_embedding" in present and "slide_embedding" in member.preprocessors:
            vectors["slide_embedding"] = encode_matrix(member.preprocessors["slide_embedding"],
                                                       np.asarray(inputs.slide_embedding).reshape(1, -1))[0]
        return vectors


def make_batch(dims: dict[str, int], wsi: np.ndarray | None,
               vectors: dict[str, np.ndarray | None]) -> dict[str, torch.Tensor]:
    """A one-patient batch in the network's input format; a missing modality is zeros with present=False."""
    import torch

    batch: dict[str, torch.Tensor] = {}
    for modality, width in dims.items():
        if modality == "wsi":
            if wsi is None:
                batch["wsi"] = torch.zeros(1, 1, width)
                batch["wsi_mask"] = torch.zeros(1, 1, dtype=torch.bool)
                batch["wsi_present"] = torch.zeros(1, dtype=torch.bool)
                continue
            feats = np.asarray(wsi, dtype=np.float32)
            if feats.ndim != 2 or feats.shape[1] != width:
                raise InputMismatch("wsi", f"WSI bag has shape {feats.shape}, the network expects (N, {width})")
            batch["wsi"] = torch.from_numpy(np.ascontiguousarray(feats))[None]
            batch["wsi_mask"] = torch.ones(1, feats.shape[0], dtype=torch.bool)
            batch["wsi_present"] = torch.ones(1, dtype=torch.bool)
            continue
        vector = vectors.get(modality)
        if vector is None:
            batch[modality] = torch.zeros(1, width)
            batch[f"{modality}_present"] = torch.zeros(1, dtype=torch.bool)
            continue
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != width:
            raise InputMismatch(modality, f"{modality} vector has {vector.shape[0]} values, the network expects {width}")
        if not np.isfinite(vector).all():
            raise InputMismatch(modality, f"{modality} vector contains non-finite values after preprocessing")
        batch[modality] = torch.from_numpy(np.ascontiguousarray(vector))[None]
        batch[f"{modality}_present"] = torch.ones(1, dtype=torch.bool)
    return batch


# ---------------------------------------------------------------------------------------------------------------
# Loading


def read_bundle_json(path: Path | str) -> dict[str, Any]:
    """The parsed bundle.json (raises BundleError naming bundle.json and the cause when unreadable)."""
    file = Path(path) / BUNDLE_JSON
    try:
        doc = json.loads(file.read_text())
    except Exception as err:  # OSError, invalid JSON, RecursionError, MemoryError: all are bundle.json's
        raise BundleError(f"cannot read {file} ({_size(file)}): {describe(err)}") from err
    if not isinstance(doc, dict) or doc.get("format_version") != FORMAT_VERSION:
        found = doc.get("format_version") if isinstance(doc, dict) else type(doc).__name__
        raise BundleError(f"{file}: unsupported bundle format {found!r} (expected {FORMAT_VERSION})")
    return doc


def _size(file: Path) -> str:
    try:
        return f"{file.stat().st_size} bytes"
    except OSError:
        return "size unknown"


def check_bundle_doc(doc: dict[str, Any], file: Path, task: Any = None) -> None:
    """Refuse a bundle.json whose fields are missing or of the wrong type, or that belongs to another task.

    `task` (a tasks.Task) is the case's task: a bundle of another task, or with another output kind (a probability
    where months are expected), would write a number of the wrong kind, so it is refused with both named.
    """
    expected = {"task_id": int, "output_kind": str, "modalities": list, "members": list, "calibration": dict,
                "weights_sha256": str}
    for key, kind in expected.items():
        if not isinstance(doc.get(key), kind) or isinstance(doc.get(key), bool):
            raise BundleError(f"{file}: field {key!r} is {type(doc.get(key)).__name__}, expected {kind.__name__}")
    if doc["output_kind"] not in ("months", "probability"):
        raise BundleError(f"{file}: unknown output_kind {doc['output_kind']!r}")
    if not doc["members"] or not all(isinstance(m, dict) for m in doc["members"]):
        raise BundleError(f"{file}: 'members' must be a non-empty list of objects")
    if len(doc["weights_sha256"]) != 64:
        raise BundleError(f"{file}: 'weights_sha256' is not a SHA-256 hex digest")
    if task is not None and (doc["task_id"] != task.id or doc["output_kind"] != task.output_kind):
        raise BundleError(f"{file} is a Task {doc['task_id']} bundle (output {doc['output_kind']}) in the folder of "
                          f"Task {task.id} (output {task.output_kind}): refused")
    if not all(isinstance(m, str) for m in doc["modalities"]) or not set(doc["modalities"]) <= set(MODALITY_ORDER):
        raise BundleError(f"{file}: 'modalities' {str(doc['modalities'])[:80]} are not among {list(MODALITY_ORDER)}")
    genes = doc.get("genes") or []
    if not isinstance(genes, list) or not all(isinstance(g, str) for g in genes) or len(set(genes)) != len(genes):
        raise BundleError(f"{file}: 'genes' must be a list of distinct gene names")


def _restore_schema(state: dict[str, Any] | None) -> Any:
    if state is None:
        return None
    from chimera_surv.readers.clinical import ClinicalSchema

    return ClinicalSchema.from_dict(state)


def load_bundle(model_dir: Path | str, task: Any = None) -> Bundle | None:
    """Load `model_dir` (e.g. model/nmibc-recurrence). None when there is no bundle; BundleError when it is broken
    or, given the case's `task`, belongs to another task or output kind. Messages name the file at fault."""
    path = Path(model_dir)
    if not (path / BUNDLE_JSON).is_file():
        return None
    doc = read_bundle_json(path)
    check_bundle_doc(doc, path / BUNDLE_JSON, task)
    weights_file = path / WEIGHTS_FILE
    try:
        weight_bytes = weights_file.read_bytes()
    except Exception as err:  # missing file, OSError, MemoryError
        raise BundleError(f"cannot read {weights_file} ({_size(weights_file)}): {describe(err)}") from err
    if hashlib.sha256(weight_bytes).hexdigest() != doc["weights_sha256"]:
        raise BundleError(f"{weights_file} ({len(weight_bytes)} bytes) does not match the checksum (weights_sha256) "
                          f"recorded in {path / BUNDLE_JSON}: the weights were changed or belong to another bundle")
    try:
        return _build(path, doc, weight_bytes)
    except BundleError as err:  # every refusal names the bundle
        if str(path) in str(err):
            raise
        raise BundleError(f"{path / BUNDLE_JSON}: {err}") from err
    except KeyError as err:
        raise BundleError(f"{path / BUNDLE_JSON}: missing field {err}") from err
    except Exception as err:  # any other failure while rebuilding is a broken bundle, with its cause (one line)
        raise BundleError(f"bundle {path} cannot be rebuilt: {' '.join(describe(err).split())[:400]}") from err


def _classical_member(entry: dict[str, Any], state: dict[str, Any], where: str) -> ClassicalMember:
    """Rebuilt and validated (structure in classical/predictors.py, then one prediction on zero inputs, which
    exercises every block's shapes): a member that fails is refused at load, named, never at predict time."""
    from chimera_surv.classical import ClassicalModel

    arrays = {key: value.numpy() for key, value in state.items()}
    try:
        model = ClassicalModel.from_parts(entry["model"], arrays)
        member = ClassicalMember(name=entry["name"], model=model,
                                 input_dims=input_dims_field(entry["input_dims"]),
                                 preprocessors={m: _restore_preprocessor(m, s)
                                                for m, s in entry["preprocessing"].items()},
                                 risk_shift=finite_field(entry["risk_shift"], "risk_shift"),
                                 risk_scale=finite_field(entry["risk_scale"], "risk_scale", nonzero=True))
        check_classical_member(member)
    except BundleError as err:
        raise BundleError(f"{where}: {err}") from err
    except Exception as err:
        raise BundleError(f"{where}: {' '.join(describe(err).split())[:400]}") from err
    return member


def _build(path: Path, doc: dict[str, Any], weight_bytes: bytes) -> Bundle:
    import torch
    from safetensors.torch import load as safetensors_load

    from chimera_surv.models import build_network

    tensors = safetensors_load(weight_bytes)
    for key, value in tensors.items():  # a NaN/inf weight would only surface as a NaN risk at predict time
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise BundleError(f"{path / WEIGHTS_FILE}: tensor {key!r} holds non-finite values")
    members = []
    for index, entry in enumerate(doc["members"]):
        prefix = entry["prefix"]
        if not isinstance(prefix, str):
            raise BundleError(f"{path / BUNDLE_JSON}: member {index}: field 'prefix' is not a string")
        state = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
        kind = entry.get("kind", "network")
        if kind == "classical":
            where = (f"{path / BUNDLE_JSON} member {index} ({entry.get('name')!r}, arrays {prefix}* in "
                     f"{WEIGHTS_FILE})")
            members.append(_classical_member(entry, state, where))
            continue
        if kind != "network":
            raise BundleError(f"member {entry['name']}: unknown kind '{kind}'")
        network = build_network(entry["network"])
        missing, unexpected = network.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise BundleError(f"member {entry['name']}: missing keys {list(missing)[:5]}, "
                              f"unexpected keys {list(unexpected)[:5]}")
        network.eval()
        preprocessors = {m: _restore_preprocessor(m, s) for m, s in entry["preprocessing"].items()}
        members.append(Member(name=entry["name"], network=network, network_config=entry["network"],
                              input_dims=input_dims_field(entry["input_dims"]), preprocessors=preprocessors,
                              risk_shift=finite_field(entry["risk_shift"], "risk_shift"),
                              risk_scale=finite_field(entry["risk_scale"], "risk_scale", nonzero=True)))
    calibration = build_calibration(doc["calibration"])
    if getattr(calibration, "kind", doc["output_kind"]) != doc["output_kind"]:
        raise BundleError(f"{path / BUNDLE_JSON}: calibration {doc['calibration'].get('name')!r} gives "
                          f"{calibration.kind}, but the bundle's output_kind is {doc['output_kind']}")
    recipe = None
    if doc.get("recipe") is not None:
        from chimera_surv.features import FeatureRecipe

        recipe = FeatureRecipe.from_dict(doc["recipe"])
    return Bundle(path=path, task_id=int(doc["task_id"]), modalities=list(doc["modalities"]), recipe=recipe,
                  mri_kind=doc.get("mri_kind"), genes=list(doc.get("genes") or []),
                  clinical_schema=_restore_schema(doc.get("clinical_schema")), members=members,
                  calibration=calibration, output_kind=doc["output_kind"],
                  meta=doc.get("meta", {}))
