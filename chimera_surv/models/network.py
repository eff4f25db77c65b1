"""A survival network assembled from a JSON config: per-modality encoders → fusion → head.

``build_network(config)`` is the only constructor the trainer, the bundle and the audit use, so a bundle is
fully described by ``bundle.json`` (``net.config``) plus its safetensors weights. The forward pass is split
into ``embed`` (modality inputs → one embedding per modality) and ``fuse_and_head`` (embeddings → outputs)
so the InterSHAP audit can replace an embedding by a baseline: ``forward(b) == fuse_and_head(embed(b),
present(b))``. A missing modality (``present`` False, no tensor, or an empty bag) is replaced by a learned
token (``"missing": "token"``, default) or zeros (``"zero"``), so every fusion degrades gracefully.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import torch
from torch import Tensor, nn

from chimera_surv.models import ca_mlif as _ca_mlif  # noqa: F401  (registers the CA-MLIF fusions)
from chimera_surv.models import mil as _mil  # noqa: F401  (registers the MIL encoders)
from chimera_surv.models.fusion import FUSIONS
from chimera_surv.models.heads import HEADS
from chimera_surv.models.modality import MODALITY_ENCODERS, init_xavier

INITS = ("default", "xavier_normal")


class SurvivalNetwork(nn.Module):
    """encoders[m] → (missing token) → fusion → head; outputs ``risk`` (B,), ``logits`` and extras."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        json.dumps(config)  # the config must be JSON (it is stored in bundle.json)
        self.config = copy.deepcopy(config)
        mods = config["modalities"]
        if not mods:
            raise ValueError("config['modalities'] is empty")
        self.modalities = list(mods)
        self.encoders = nn.ModuleDict()
        dims: dict[str, int] = {}
        for m, spec in mods.items():
            enc = MODALITY_ENCODERS.build(spec.get("encoder", {"name": "identity"}), dim=int(spec["dim"]))
            self.encoders[m] = enc
            dims[m] = int(enc.out_dim)
        self.embed_dims = dims
        self.missing = config.get("missing", "token")
        if self.missing not in ("token", "zero"):
            raise ValueError(f"unknown missing strategy '{self.missing}'")
        self.missing_tokens = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(d)) for m, d in dims.items()} if self.missing == "token" else {})
        self.fusion = FUSIONS.build(config["fusion"], dims=dims)
        self.head = HEADS.build(config.get("head", {"name": "cox"}), in_dim=int(self.fusion.out_dim))
        init = config.get("init", "default")
        if init not in INITS:
            raise ValueError(f"unknown init '{init}' (known: {INITS})")
        if init == "xavier_normal":  # seed 002's initialize_weights: every Linear, encoders to head
            init_xavier(self)

    # -------------------------------------------------------------------------------------------- inputs
    def _batch_size(self, batch: dict[str, Tensor]) -> int:
        for m in self.modalities:
            for key in (m, f"{m}_present"):
                if key in batch:
                    return int(batch[key].shape[0])
        raise ValueError("batch holds none of the configured modalities")

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def present(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """(B,) bool per modality: given, flagged present, and (for bags) at least one valid patch."""
        b = self._batch_size(batch)
        out: dict[str, Tensor] = {}
        for m in self.modalities:
            if m not in batch:
                out[m] = torch.zeros(b, dtype=torch.bool, device=self._device())
                continue
            p = batch.get(f"{m}_present")
            p = torch.ones(b, dtype=torch.bool, device=batch[m].device) if p is None else p.to(torch.bool)
            if getattr(self.encoders[m], "is_bag", False):
                x = batch[m]
                mask = batch.get(f"{m}_mask")
                if x.shape[1] == 0:
                    p = torch.zeros_like(p)
                elif mask is not None:
                    p = p & mask.to(torch.bool).any(dim=1)
            out[m] = p
        return out

    # -------------------------------------------------------------------------------------------- stages
    def _embed(self, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        b = self._batch_size(batch)
        present = self.present(batch)
        embs: dict[str, Tensor] = {}
        attention: dict[str, Tensor] = {}
        for m in self.modalities:
            enc = self.encoders[m]
            if m not in batch or not bool(present[m].any()):
                embs[m] = torch.zeros(b, self.embed_dims[m], device=self._device())
                continue
            x = torch.nan_to_num(batch[m].float(), nan=0.0, posinf=0.0, neginf=0.0)
            mask = batch.get(f"{m}_mask")
            emb, attn = enc(x, None if mask is None else mask.to(torch.bool))
            embs[m] = emb
            if attn is not None:
                attention[m] = attn
        return embs, attention

    def embed(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Per-modality embeddings (B, d_m), before any missing-token substitution."""
        return self._embed(batch)[0]

    def fuse_and_head(self, embeddings: dict[str, Tensor],
                      present: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Fusion + head on embeddings; absent rows take the missing token (present=None: all present)."""
        b = int(next(iter(embeddings.values())).shape[0])
        pres: dict[str, Tensor] = {}
        embs: dict[str, Tensor] = {}
        for m in self.modalities:
            e = embeddings[m]
            p = torch.ones(b, dtype=torch.bool, device=e.device) if present is None or m not in present \
                else present[m].to(torch.bool)
            fill = self.missing_tokens[m] if self.missing == "token" else torch.zeros_like(e[0])
            embs[m] = torch.where(p[:, None], e, fill.to(e.dtype).expand_as(e))
            pres[m] = p
        fused, aux = self.fusion(embs, pres)
        out = dict(self.head(fused))
        if aux is not None:
            out["aux_loss"] = aux
        return out

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        embs, attention = self._embed(batch)
        out = self.fuse_and_head(embs, self.present(batch))
        for m, a in attention.items():
            out[f"{m}_attention"] = a
        if attention:
            out["attention"] = attention.get("wsi", next(iter(attention.values())))
        return out


def build_network(config: dict[str, Any]) -> SurvivalNetwork:
    """The one constructor: ``{"modalities": {m: {"dim", "encoder"}}, "fusion": {...}, "head": {...}}``."""
    return SurvivalNetwork(config)


def count_parameters(net: nn.Module, include_missing_tokens: bool = False) -> int:
    """Trainable parameters; missing tokens excluded by default (the seeds have none)."""
    return sum(p.numel() for n, p in net.named_parameters()
               if p.requires_grad and (include_missing_tokens or not n.startswith("missing_tokens.")))


# ------------------------------------------------------------------------------------------------ presets
def _seed000(fusion: dict[str, Any]) -> dict[str, Any]:
    """Seed 000: fusion of two fixed 2048-d embeddings, order [RNA | WSI]."""
    return {"modalities": {"rna": {"dim": 2048, "encoder": {"name": "identity"}},
                           "wsi": {"dim": 2048, "encoder": {"name": "identity"}}},
            "fusion": fusion, "head": {"name": "cox"}}


def _seed002(fusion: dict[str, Any], n_genes: int = 19359) -> dict[str, Any]:
    """Seed 002: UNI bag (1024) → gated ABMIL 512 (attention 256); RNA MLP → 128; clinical raw 27-d;
    xavier-normal on every Linear, zero biases (its ``initialize_weights``)."""
    return {"modalities": {"wsi": {"dim": 1024, "encoder": {"name": "abmil_gated", "hidden": 512,
                                                           "attn_hidden": 256, "dropout": 0.25}},
                           "rna": {"dim": n_genes, "encoder": {"name": "rna_mlp"}},
                           "clinical": {"dim": 27, "encoder": {"name": "identity"}}},
            "fusion": fusion, "head": {"name": "cox"}, "init": "xavier_normal"}


SEED002_PAIRS = {"wsi*rna": 64, "wsi*clinical": 32, "rna*clinical": 32}


PRESETS: dict[str, dict[str, Any]] = {
    "seed000_mlp": _seed000({"name": "concat_mlp", "hidden": [2048, 200], "dropout": 0.5}),
    "seed000_crossattn": _seed000({"name": "crossattn_concat", "hidden": 256, "heads": 8}),
    "seed000_bilinear": _seed000({"name": "bilinear_main", "rank": 64, "hidden": 64}),
    "seed000_bilinear_product": _seed000({"name": "bilinear_product", "rank": 64, "hidden": 64}),
    "seed000_gated": _seed000({"name": "gated", "hidden": 256, "mlp_hidden": 64}),
    "seed000_gated_convex": _seed000({"name": "gated_convex", "hidden": 256, "mlp_hidden": 64}),
    "seed000_late": _seed000({"name": "late_sum", "out": 1}),
    "seed002_abmil_surv": _seed002({"name": "concat_mlp", "hidden": []}),
    "seed002_abmil_pg": _seed002({"name": "pg_bilinear", "rank": 64, "pair_out": dict(SEED002_PAIRS)}),
    "seed002_abmil_pg_res": _seed002({"name": "pg_res", "rank": 64, "pair_out": dict(SEED002_PAIRS),
                                      "residual": 128}),
    "seed003_modalsurv": {
        "modalities": {"wsi": {"dim": 768, "encoder": {"name": "projection", "out": 128, "dropout": 0.1}},
                       "rna": {"dim": 128, "encoder": {"name": "projection", "out": 128, "dropout": 0.1}},
                       "clinical": {"dim": 8, "encoder": {"name": "projection", "out": 128, "dropout": 0.1}}},
        "fusion": {"name": "crossattn_gated", "heads": 4, "gated": True, "dropout": 0.1},
        "head": {"name": "deephit", "n_bins": 30, "variant": "modalsurv", "grid": "modalsurv"}},
    "seed001_ca_mlif": {
        "modalities": {"wsi": {"dim": 1024, "encoder": {"name": "abmil_gated", "hidden": 256}},
                       "rna": {"dim": 2000, "encoder": {"name": "mlp", "hidden": [256], "dropout": 0.25}}},
        "fusion": {"name": "ca_mlif", "dim": 64, "n_tokens": 4, "rank": 4, "mmhid": 64},
        "head": {"name": "cox", "output_range": 6.0}},
}


def preset(name: str) -> dict[str, Any]:
    """A deep copy of a named seed architecture's config."""
    return copy.deepcopy(PRESETS[name])
