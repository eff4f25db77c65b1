"""A classical bundle member: weighted parts, each a design (modality blocks) and a predictor.

risk = sum_j weight_j * (predictor_j(design_j(x)) - shift_j) / scale_j. One part is a single family (penalised
Cox, tree ensemble); two parts are a clinical backbone plus a shrunk residual on the other modalities; several parts
from different families are a cross-family ensemble. Weights, shifts and scales are fitted in train/ (inner folds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from chimera_surv.classical.design import DesignBlock
from chimera_surv.classical.predictors import predictor_from_parts


@dataclass
class Part:
    """One family's model on some modalities' blocks, with its weight in the member's risk."""

    family: str
    blocks: list[DesignBlock]
    predictor: Any
    weight: float = 1.0
    shift: float = 0.0
    scale: float = 1.0

    @property
    def modalities(self) -> list[str]:
        return [b.modality for b in self.blocks]

    def design(self, rows: dict[str, np.ndarray | None], present: dict[str, np.ndarray], n: int) -> np.ndarray:
        """(n, sum of block widths); a patient without a modality gets that block's training mean (zeros)."""
        cols = []
        for block in self.blocks:
            values = rows.get(block.modality)
            if values is None:
                cols.append(block.transform(None, n))
                continue
            mask = np.asarray(present.get(block.modality, np.ones(n, dtype=bool)), dtype=bool)
            out = np.zeros((n, block.width))
            if mask.any():
                out[mask] = block.transform(np.asarray(values)[mask])
            cols.append(out)
        return np.concatenate(cols, axis=1) if cols else np.zeros((n, 0))

    def raw(self, rows: dict[str, np.ndarray | None], present: dict[str, np.ndarray], n: int) -> np.ndarray:
        return self.predictor.predict(self.design(rows, present, n))

    def score(self, rows: dict[str, np.ndarray | None], present: dict[str, np.ndarray], n: int) -> np.ndarray:
        return self.weight * (self.raw(rows, present, n) - self.shift) / self.scale


@dataclass
class ClassicalModel:
    """A member's classical model; `rows[m]` are the encoded vectors (slides: pooled summaries), (n, d) or None."""

    family: str
    parts: list[Part]

    @property
    def modalities(self) -> list[str]:
        seen: list[str] = []
        for part in self.parts:
            seen += [m for m in part.modalities if m not in seen]
        return seen

    @property
    def pools(self) -> list[str]:
        for part in self.parts:
            for block in part.blocks:
                if block.pools:
                    return block.pools
        return []

    def predict(self, rows: dict[str, np.ndarray | None], present: dict[str, np.ndarray] | None = None) -> np.ndarray:
        n = next((len(v) for v in rows.values() if v is not None), 1)
        present = present or {}
        total = np.zeros(n)
        for part in self.parts:
            total += part.score(rows, present, n)
        return total

    # -- serialisation ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "parts": [
            {"family": p.family, "weight": float(p.weight), "shift": float(p.shift), "scale": float(p.scale),
             "blocks": [b.to_dict() for b in p.blocks], "predictor": p.predictor.to_dict()} for p in self.parts]}

    def arrays(self) -> dict[str, np.ndarray]:
        """Flat name → array map (safetensors keys), in a fixed order."""
        out: dict[str, np.ndarray] = {}
        for j, part in enumerate(self.parts):
            for k, block in enumerate(part.blocks):
                out.update({f"p{j}.b{k}.{name}": a for name, a in block.arrays().items()})
            out.update({f"p{j}.pred.{name}": a for name, a in part.predictor.arrays().items()})
        return out

    @classmethod
    def from_parts(cls, doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> ClassicalModel:
        parts = []
        for j, pdoc in enumerate(doc["parts"]):
            blocks = [DesignBlock.from_parts(bdoc, _sub(arrays, f"p{j}.b{k}.")) for k, bdoc in enumerate(pdoc["blocks"])]
            try:
                predictor = predictor_from_parts(pdoc["predictor"], _sub(arrays, f"p{j}.pred."))
            except (ValueError, TypeError, KeyError) as err:  # name the arrays' keys, the field is in the message
                raise ValueError(f"part {j} predictor (arrays p{j}.pred.*): {err}") from err
            width = sum(b.width for b in blocks)
            if predictor.n_features != width:
                raise ValueError(f"part {j}: predictor expects {predictor.n_features} features, design has {width}")
            parts.append(Part(pdoc["family"], blocks, predictor, float(pdoc["weight"]), float(pdoc["shift"]),
                              float(pdoc["scale"])))
        return cls(doc["family"], parts)


def _sub(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: np.asarray(v) for k, v in arrays.items() if k.startswith(prefix)}
