"""Adapter: audit any network built by ``chimera_surv.models.build_network`` (contract: docs/contracts.md).

Why: InterSHAP plays the game over modality *embeddings*, after each modality encoder and before fusion, so a
coalition only changes what the fusion sees. The network exposes ``embed(batch) -> {m: (B, d_m)}`` and
``fuse_and_head(embeddings, present) -> {"risk": (B,), ...}``; this module turns that pair into the
model-agnostic value function of ``intershap.py``. Fusion + head run on a float64 copy by default so that an
additive (late-fusion) model measures |interaction| at rounding level (< 1e-12), not float32 noise.

Output spaces: ``"risk"`` is the head's ``risk`` output as the contract defines it (Cox log-risk, DeepHit -E[T],
Task 2 logit); ``"expected_time"`` negates it (DeepHit E[T]). Percentages are invariant to the sign.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from chimera_surv.audit.intershap import InterSHAPResult, as_numpy, intershap
from chimera_surv.audit.maskers import Masker

OUTPUTS = {"risk": 1.0, "expected_time": -1.0}


@torch.no_grad()
def embed_batch(net: nn.Module, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-modality embeddings of a batch in eval mode (restores the training flag)."""
    was_training = net.training
    net.eval()
    try:
        return dict(net.embed(dict(batch)))
    finally:
        net.train(was_training)


def _cast(embeddings: Mapping[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    return {m: v.to(dtype) if dtype is not None else v for m, v in embeddings.items()}


def presence_of(batch: Mapping[str, Any], modalities: list[str], n: int) -> dict[str, np.ndarray]:
    """``batch[f"{m}_present"]`` as bool arrays (all True when the batch carries no flag)."""
    out = {}
    for m in modalities:
        flag = batch.get(f"{m}_present")
        out[m] = np.ones(n, dtype=bool) if flag is None else as_numpy(flag).reshape(n).astype(bool)
    return out


def network_value_function(net: nn.Module, output: str = "risk", dtype: torch.dtype = torch.float64):
    """f(embeddings, present) -> (B,) numpy: the network's fusion + head on (masked) embeddings."""
    if output not in OUTPUTS:
        raise ValueError(f"unknown output '{output}' (known: {sorted(OUTPUTS)})")
    sign = OUTPUTS[output]
    device = next((p.device for p in net.parameters()), torch.device("cpu"))

    @torch.no_grad()
    def f(embeddings: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> np.ndarray:
        emb = {m: torch.as_tensor(x, dtype=dtype, device=device) for m, x in embeddings.items()}
        pres = {m: torch.as_tensor(p, dtype=torch.bool, device=device) for m, p in present.items()}
        risk = net.fuse_and_head(emb, pres)["risk"]
        return sign * as_numpy(risk).reshape(-1)

    return f


def audit_network(
    net: nn.Module,
    batch: Mapping[str, torch.Tensor],
    background_embeddings: Mapping[str, Any] | None = None,
    masker: str | dict[str, Any] | Masker = "mean",
    *,
    background_batch: Mapping[str, torch.Tensor] | None = None,
    background_present: Mapping[str, Any] | None = None,
    modalities: list[str] | None = None,
    output: str = "risk",
    precision: torch.dtype = torch.float64,
    patient_ids: list[str] | None = None,
    max_rows: int = 65536,
    missing: str = "null",
) -> InterSHAPResult:
    """InterSHAP of ``net`` on the patients in ``batch``.

    Background: pass ``background_embeddings`` (m -> (K, d_m), e.g. the training set's ``embed_batch``) or a
    ``background_batch`` to embed here; its ``{m}_present`` flags are honoured by the mean/shuffle maskers.
    A patient's own missing modality is a null player by default (``missing="null"``: it stays missing in every
    coalition); ``missing="masked"`` replaces it like a present one (attributes the effect of missingness).
    """
    # Encoders run in the network's own precision (they may cast inputs); only fusion + head run on the copy.
    emb = _cast(embed_batch(net, batch), precision)
    work = copy.deepcopy(net).to(precision) if precision is not None else net
    work.eval()
    if modalities is None:
        config = getattr(net, "config", None)
        declared = getattr(net, "modalities", None) or (config.get("modalities") if isinstance(config, dict) else None)
        order = list(declared or [])
        modalities = [m for m in order if m in emb] or list(emb)
    n = int(next(iter(emb.values())).shape[0])
    present = presence_of(batch, modalities, n)
    if background_embeddings is None:
        if background_batch is None:
            raise ValueError("audit_network needs background_embeddings or background_batch")
        background_embeddings = embed_batch(net, background_batch)
        if background_present is None:
            n_bg = int(next(iter(background_embeddings.values())).shape[0])
            background_present = presence_of(background_batch, modalities, n_bg)
    bg_present = None if background_present is None else {m: as_numpy(v).astype(bool)
                                                          for m, v in background_present.items()}
    result = intershap(
        network_value_function(work, output, precision or next(iter(emb.values())).dtype),
        {m: emb[m] for m in modalities},
        {m: background_embeddings[m] for m in modalities},
        masker,
        modalities=modalities,
        present=present,
        background_present=bg_present,
        with_presence=True,
        output=output,
        patient_ids=patient_ids,
        max_rows=max_rows,
        missing=missing,
    )
    return result
