"""Fusion modules of the seed papers (seed-methods.md §1.2, §3.2, §4.2, §0.4; CA-MLIF is in ca_mlif.py).

Every fusion is built as ``FUSIONS.build(cfg, dims={modality: embedding width, ...})`` (config order =
modality order), exposes ``out_dim`` and is called as ``fusion(embs, present) -> (fused (B, out_dim),
aux_loss | None)``. ``embs`` already carry the network's learned missing token where a modality is absent;
``present`` (B,) bool lets a fusion additionally mask (cross-attention keys). The head sits on ``fused``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from chimera_surv.models.modality import init_xavier, mlp_layers
from chimera_surv.registry import Registry

FUSIONS: Registry[Any] = Registry("fusion")

Embeddings = dict[str, Tensor]
FusionOut = tuple[Tensor, Tensor | None]


class Fusion(nn.Module):
    """Base: remembers the modality order and widths."""

    def __init__(self, dims: dict[str, int]) -> None:
        super().__init__()
        self.names = list(dims)
        self.dims = dict(dims)

    def ordered(self, embs: Embeddings) -> list[Tensor]:
        return [embs[m] for m in self.names]


def _need(dims: dict[str, int], k: int, what: str) -> None:
    if len(dims) < k:
        raise ValueError(f"{what} needs at least {k} modalities, got {list(dims)}")


# --------------------------------------------------------------------------------------------- early / late


@FUSIONS.register("concat_mlp")
class ConcatMLP(Fusion):
    """Early fusion (seed 000 baseline): concat → [Dropout → Linear → ReLU]* → Dropout.

    Seed sizes on 2×2048: hidden (2048, 200), dropout 0.5 (8,800,657 parameters with the Cox head).
    ``hidden=()`` is the seed 002 ABMIL_Surv baseline (head straight on the concat).
    """

    def __init__(self, dims: dict[str, int], hidden: Sequence[int] = (2048, 200), dropout: float = 0.5) -> None:
        super().__init__(dims)
        total = sum(dims.values())
        body, self.out_dim = mlp_layers(total, hidden, dropout, dropout_first=True) if hidden else \
            (nn.Identity(), total)
        self.body = nn.Sequential(body, nn.Dropout(dropout)) if hidden and dropout > 0 else body

    def forward(self, embs: Embeddings, present: Embeddings) -> FusionOut:
        return self.body(torch.cat(self.ordered(embs), dim=1)), None


@FUSIONS.register("late_sum")
class LateSum(Fusion):
    """Late fusion: Σ_m g_m(e_m). Zero cross-modal interaction by construction (the head is affine).

    With ``out=1`` each g_m is a per-modality risk and the Cox head only rescales their sum.
    """

    def __init__(self, dims: dict[str, int], hidden: Sequence[int] = (), out: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__(dims)
        self.branches = nn.ModuleDict()
        for m, d in dims.items():
            body, h = mlp_layers(d, hidden, dropout) if hidden else (nn.Identity(), d)
            self.branches[m] = nn.Sequential(body, nn.Linear(h, out))
        self.out_dim = out

    def forward(self, embs: Embeddings, present: Embeddings) -> FusionOut:
        return torch.stack([self.branches[m](embs[m]) for m in self.names]).sum(dim=0), None


# --------------------------------------------------------------------------------------------- bilinear


class LowRankBilinear(nn.Module):
    """Seed 002 LRB: y = W_o((W1 x1 + b1) ⊙ (W2 x2 + b2)) + b_o (biases keep linear main effects)."""

    def __init__(self, d1: int, d2: int, rank: int, out: int) -> None:
        super().__init__()
        self.p1, self.p2, self.o = nn.Linear(d1, rank), nn.Linear(d2, rank), nn.Linear(rank, out)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return self.o(self.p1(x1) * self.p2(x2))


@FUSIONS.register("pg_bilinear")
class PairwiseBilinear(Fusion):
    """ABMIL-PG (seed 002): one LowRankBilinear per modality pair, concatenated.

    ``pair_out``: an int for every pair or ``{"wsi*rna": 64, ...}``; seed: (wsi,rna) 64, (wsi,clin) 32,
    (rna,clin) 32 with rank 64. ``residual`` > 0 adds seed 002's ABMIL_Surv_PG_Res branch
    ReLU(Linear(Σ d_m → residual)) on the concatenated embeddings (released: 512+128+27 = 667 → 128, so the
    classifier reads 64+32+32+128 = 256). Xavier-normal init as in the seed code.
    """

    def __init__(self, dims: dict[str, int], rank: int = 64, pair_out: int | dict[str, int] = 32,
                 residual: int = 0, xavier: bool = True) -> None:
        super().__init__(dims)
        _need(dims, 2, "pg_bilinear")
        self.pairs = list(itertools.combinations(self.names, 2))
        self.lrb = nn.ModuleDict()
        total = 0
        for a, b in self.pairs:
            key = f"{a}*{b}"
            out = pair_out if isinstance(pair_out, int) else int(pair_out.get(key, pair_out.get(f"{b}*{a}", 32)))
            self.lrb[key] = LowRankBilinear(dims[a], dims[b], rank, out)
            total += out
        self.residual = nn.Sequential(nn.Linear(sum(dims.values()), residual), nn.ReLU()) if residual else None
        self.out_dim = total + int(residual)
        if xavier:
            init_xavier(self)

    def forward(self, embs: Embeddings, present: Embeddings) -> FusionOut:
        parts = [self.lrb[f"{a}*{b}"](embs[a], embs[b]) for a, b in self.pairs]
        if self.residual is not None:
            parts.append(self.residual(torch.cat(self.ordered(embs), dim=1)))
        return torch.cat(parts, dim=1), None


@FUSIONS.register("pg_res")
def pg_res(dims: dict[str, int], rank: int = 64, pair_out: int | dict[str, int] = 32, residual: int = 128,
           xavier: bool = True) -> PairwiseBilinear:
    """ABMIL_Surv_PG_Res (seed 002 ``Docker/model/model_abmil.py``): pairwise LRBs + a 128-d ReLU residual."""
    return PairwiseBilinear(dims, rank, pair_out, residual=residual, xavier=xavier)


@FUSIONS.register("bilinear_main")
class BilinearMainEffects(Fusion):
    """Seed 000 bilinear: [BN(L_m e_m) for m] + [BN(L'_a e_a ⊙ L'_b e_b) for pairs] → Drop→Linear→ReLU→Drop.

    Seed sizes on 2×2048: rank 64, hidden 64, dropout 0.25 → 537,345 parameters with the Cox head (the
    code's ``BilinearFusion``). ``main_effects=False, factor_bias=False`` is the paper's pure ⊙ form
    (``bilinear_product``).
    """

    def __init__(self, dims: dict[str, int], rank: int = 64, hidden: int = 64, dropout: float = 0.25,
                 main_effects: bool = True, factor_bias: bool = True) -> None:
        super().__init__(dims)
        _need(dims, 2, "bilinear_main")
        self.main = nn.ModuleDict({m: nn.Linear(d, rank) for m, d in dims.items()} if main_effects else {})
        self.main_bn = nn.ModuleDict({m: nn.BatchNorm1d(rank) for m in dims} if main_effects else {})
        self.pairs = list(itertools.combinations(self.names, 2))
        self.factors = nn.ModuleDict()
        self.pair_bn = nn.ModuleDict()
        for a, b in self.pairs:
            self.factors[f"{a}*{b}"] = nn.ModuleList([nn.Linear(dims[a], rank, bias=factor_bias),
                                                      nn.Linear(dims[b], rank, bias=factor_bias)])
            self.pair_bn[f"{a}*{b}"] = nn.BatchNorm1d(rank)
        width = rank * (len(self.main) + len(self.pairs))
        self.mlp = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.out_dim = hidden

    def forward(self, embs: Embeddings, present: Embeddings) -> FusionOut:
        parts = [self.main_bn[m](self.main[m](embs[m])) for m in self.main]
        for a, b in self.pairs:
            fa, fb = self.factors[f"{a}*{b}"]
            parts.append(self.pair_bn[f"{a}*{b}"](fa(embs[a]) * fb(embs[b])))
        return self.mlp(torch.cat(parts, dim=1)), None


@FUSIONS.register("bilinear_product")
def bilinear_product(dims: dict[str, int], rank: int = 64, hidden: int = 64,
                     dropout: float = 0.25) -> BilinearMainEffects:
    """Seed 000 paper's pure element-wise form z = (W1·RNA) ⊙ (W2·WSI), W_i ∈ R^{64×2048} (no bias, no main
    effects), per pair; the BN and the MLP after z are the code's (the paper does not show them)."""
    return BilinearMainEffects(dims, rank, hidden, dropout, main_effects=False, factor_bias=False)


# --------------------------------------------------------------------------------------------- gated


@FUSIONS.register("gated")
class GatedFusion(Fusion):
    """Seed 000 code: h_m = L_m e_m, g_m = σ(G_m [all e]) per modality, [LN(h_m ⊙ g_m)] → MLP.

    ``convex=True`` is the paper's form generalised to M modalities: weights = softmax over modalities of
    G([all e]) per feature (for M=2 exactly α ⊙ h_1 + (1−α) ⊙ h_2), then LN → MLP.
    Seed sizes on 2×2048: hidden 256, mlp 64, dropout 0.25 → 3,180,673 parameters with the Cox head.
    """

    def __init__(self, dims: dict[str, int], hidden: int = 256, mlp_hidden: int = 64, dropout: float = 0.25,
                 convex: bool = False) -> None:
        super().__init__(dims)
        total = sum(dims.values())
        self.convex = convex
        self.proj = nn.ModuleDict({m: nn.Linear(d, hidden) for m, d in dims.items()})
        if convex:
            self.gate: nn.Module = nn.Linear(total, hidden * len(dims))
            self.norm: nn.Module = nn.LayerNorm(hidden)
            width = hidden
        else:
            self.gate = nn.ModuleDict({m: nn.Linear(total, hidden) for m in dims})
            self.norm = nn.ModuleDict({m: nn.LayerNorm(hidden) for m in dims})
            width = hidden * len(dims)
        self.hidden = hidden
        self.mlp = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, mlp_hidden), nn.ReLU(), nn.Dropout(dropout))
        self.out_dim = mlp_hidden

    def forward(self, embs: Embeddings, present: Embeddings) -> FusionOut:
        allx = torch.cat(self.ordered(embs), dim=1)
        h = [self.proj[m](embs[m]) for m in self.names]
        if self.convex:
            w = torch.softmax(self.gate(allx).view(-1, len(self.names), self.hidden), dim=1)
            fused = self.norm((torch.stack(h, dim=1) * w).sum(dim=1))
        else:
            fused = torch.cat([self.norm[m](hm * torch.sigmoid(self.gate[m](allx)))
                               for m, hm in zip(self.names, h)], dim=1)
        return self.mlp(fused), None


@FUSIONS.register("gated_convex")
def gated_convex(dims: dict[str, int], hidden: int = 256, mlp_hidden: int = 64,
                 dropout: float = 0.25) -> GatedFusion:
    return GatedFusion(dims, hidden, mlp_hidden, dropout, convex=True)


# --------------------------------------------------------------------------------------------- cross-attention


def _other_keys_mask(present: list[Tensor], i: int) -> Tensor:
    """key_padding_mask (True = ignore) over the other modalities; never masks a whole row."""
    others = torch.stack([p for j, p in enumerate(present) if j != i], dim=1)
    ignore = ~others
    return ignore & ~ignore.all(dim=1, keepdim=True)


@FUSIONS.register("crossattn_concat")
class CrossAttentionConcat(Fusion):
    """Seed 000 cross-attention: p_m = W_m e_m; a_m = LN(MHA_m(q=p_m, kv=others)); [p..., a...] → MLP.

    For M=2 the key sequence has length 1, so softmax ≡ 1 and a_m is a linear map of the other modality
    (seed-methods.md §1.2). Seed sizes: hidden 256, 8 heads, attention dropout 0.25, MLP 256 → 1,839,105.
    """

    def __init__(self, dims: dict[str, int], hidden: int = 256, heads: int = 8, attn_dropout: float = 0.25,
                 mlp_hidden: int = 256, dropout: float = 0.25) -> None:
        super().__init__(dims)
        _need(dims, 2, "crossattn_concat")
        self.proj = nn.ModuleDict({m: nn.Linear(d, hidden) for m, d in dims.items()})
        self.attn = nn.ModuleDict({m: nn.MultiheadAttention(hidden, heads, dropout=attn_dropout,
                                                            batch_first=True) for m in dims})
        self.norm = nn.ModuleDict({m: nn.LayerNorm(hidden) for m in dims})
        width = 2 * hidden * len(dims)
        self.mlp = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, mlp_hidden), nn.ReLU(), nn.Dropout(dropout))
        self.out_dim = mlp_hidden

    def forward(self, embs: Embeddings, present: Embeddings) -> FusionOut:
        p = [self.proj[m](embs[m]) for m in self.names]
        pres = [present[m] for m in self.names]
        attended = []
        for i, m in enumerate(self.names):
            keys = torch.stack([p[j] for j in range(len(p)) if j != i], dim=1)
            out, _ = self.attn[m](p[i].unsqueeze(1), keys, keys, key_padding_mask=_other_keys_mask(pres, i),
                                  need_weights=False)
            attended.append(self.norm[m](out.squeeze(1)))
        return self.mlp(torch.cat(p + attended, dim=1)), None


@FUSIONS.register("crossattn_gated")
class CrossAttentionGated(Fusion):
    """ModalSurv (seed 003): per modality a_i = MHA_i(q=e_i, kv=other e_j) (no self-attention, residual,
    LN or FFN); sample gating g = σ(Linear(M·d → M)[a]) and fused = Σ g_i a_i (``gated=False``: mean);
    functional dropout 0.1. Missing modalities are masked out of the keys. Any M ≥ 2.
    Inputs of unequal width are first projected linearly to ``dim``.
    """

    def __init__(self, dims: dict[str, int], dim: int | None = None, heads: int = 4, gated: bool = True,
                 dropout: float = 0.1) -> None:
        super().__init__(dims)
        _need(dims, 2, "crossattn_gated")
        widths = set(dims.values())
        self.dim = dim or (widths.pop() if len(widths) == 1 else 128)
        self.align = nn.ModuleDict({m: (nn.Identity() if d == self.dim else nn.Linear(d, self.dim))
                                    for m, d in dims.items()})
        self.attn = nn.ModuleDict({m: nn.MultiheadAttention(self.dim, heads, batch_first=True) for m in dims})
        self.gate = nn.Linear(self.dim * len(dims), len(dims)) if gated else None
        self.dropout = nn.Dropout(dropout)
        self.out_dim = self.dim

    def forward(self, embs: Embeddings, present: Embeddings) -> FusionOut:
        e = [self.align[m](embs[m]) for m in self.names]
        pres = [present[m] for m in self.names]
        attended = []
        for i, m in enumerate(self.names):
            keys = torch.stack([e[j] for j in range(len(e)) if j != i], dim=1)
            out, _ = self.attn[m](e[i].unsqueeze(1), keys, keys, key_padding_mask=_other_keys_mask(pres, i),
                                  need_weights=False)
            attended.append(out.squeeze(1))
        a = torch.stack(attended, dim=1)  # (B, M, d)
        if self.gate is not None:
            g = torch.sigmoid(self.gate(a.flatten(1)))  # (B, M), not normalised (as in the paper)
            fused = (g.unsqueeze(-1) * a).sum(dim=1)
        else:
            fused = a.mean(dim=1)
        return self.dropout(fused), None


# --------------------------------------------------------------------------------------------- LMF


class LowRankMultimodal(nn.Module):
    """LMF (Liu et al. 2018), done right: z_m = [1; h_m], out = Σ_k w_k ⊙_m (z_m W_m^(k)) + b.

    Factors (rank, d_m+1, out) per modality, works for any batch size and any M (the PG-MLIF code's
    factor/batch broadcasting bug is avoided: factors are contracted over features only).
    """

    def __init__(self, dims: Sequence[int], out: int, rank: int = 4) -> None:
        super().__init__()
        self.factors = nn.ParameterList([nn.Parameter(torch.empty(rank, d + 1, out)) for d in dims])
        self.rank_weight = nn.Parameter(torch.empty(1, rank))
        self.bias = nn.Parameter(torch.zeros(out))
        for f in self.factors:
            nn.init.xavier_normal_(f)
        nn.init.xavier_normal_(self.rank_weight)
        self.out_dim = out

    def forward(self, xs: Sequence[Tensor]) -> Tensor:
        prod = None
        for x, f in zip(xs, self.factors, strict=True):
            z = torch.cat([torch.ones_like(x[:, :1]), x], dim=1)
            fm = torch.einsum("bd,rdo->rbo", z, f)
            prod = fm if prod is None else prod * fm
        assert prod is not None
        return torch.einsum("r,rbo->bo", self.rank_weight[0], prod) + self.bias


@FUSIONS.register("lmf")
class LMFFusion(Fusion):
    """LMF over all modalities → ``out`` (ReLU optional), rank r (default 4; PG-MLIF code uses 1)."""

    def __init__(self, dims: dict[str, int], out: int = 64, rank: int = 4, dropout: float = 0.0,
                 activation: bool = True) -> None:
        super().__init__(dims)
        self.lmf = LowRankMultimodal(list(dims.values()), out, rank)
        self.post = nn.Sequential(nn.ReLU() if activation else nn.Identity(), nn.Dropout(dropout))
        self.out_dim = out

    def forward(self, embs: Embeddings, present: Embeddings) -> FusionOut:
        return self.post(self.lmf(self.ordered(embs))), None
