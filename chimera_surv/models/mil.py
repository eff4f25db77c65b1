"""Multiple-instance pooling of a patch-feature bag into one slide/patient embedding.

Gated attention MIL (Ilse et al. 2018) at seed 002's sizes, masked mean pooling, and ModalSurv's projection
of a frozen slide embedding (the mean patch feature). Both take
(B, N, D) bags with a (B, N) bool mask for padding, accept empty bags (zeros, never NaN) and return the
attention weights (B, N) so heatmaps can be drawn.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from chimera_surv.models.modality import MODALITY_ENCODERS, init_xavier, masked_mean


def masked_softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax over N restricted to valid patches; a row without valid patches gets all-zero weights."""
    if mask is None:
        return torch.softmax(scores, dim=1)
    scores = scores.masked_fill(~mask, float("-inf"))
    empty = ~mask.any(dim=1, keepdim=True)
    scores = scores.masked_fill(empty, 0.0)
    return torch.softmax(scores, dim=1) * mask.to(scores.dtype)


class GatedABMIL(nn.Module):
    """H → Linear→ReLU→Drop = H'; s = w·(tanh(V H') ⊙ σ(U H')); α = softmax(s); M = αᵀ H'."""

    is_bag = True

    def __init__(self, dim: int, hidden: int = 512, attn_hidden: int | None = None, dropout: float = 0.25,
                 xavier: bool = True) -> None:
        super().__init__()
        attn_hidden = attn_hidden or max(hidden // 2, 1)
        self.project = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.attn_tanh = nn.Sequential(nn.Linear(hidden, attn_hidden), nn.Tanh(), nn.Dropout(dropout))
        self.attn_gate = nn.Sequential(nn.Linear(hidden, attn_hidden), nn.Sigmoid(), nn.Dropout(dropout))
        self.attn_score = nn.Linear(attn_hidden, 1)
        self.out_dim = hidden
        if xavier:
            init_xavier(self)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.project(x)  # (B, N, hidden)
        scores = self.attn_score(self.attn_tanh(h) * self.attn_gate(h)).squeeze(-1)  # (B, N)
        attention = masked_softmax(scores, mask)
        return torch.bmm(attention.unsqueeze(1), h).squeeze(1), attention


class MeanPoolMIL(nn.Module):
    """Masked mean of (optionally projected) patch features; attention = uniform weights over valid patches."""

    is_bag = True

    def __init__(self, dim: int, hidden: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if hidden:
            self.project: nn.Module = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout))
            self.out_dim = hidden
        else:
            self.project = nn.Identity()
            self.out_dim = dim

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.project(x)
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        weights = mask.to(h.dtype) / mask.sum(dim=1, keepdim=True).clamp(min=1).to(h.dtype)
        return masked_mean(h, mask), weights


class SlideProjection(nn.Module):
    """A frozen slide embedding (the masked mean of the patch features) → Linear→ReLU→Dropout.

    Why: ModalSurv (seed 003) projects a frozen slide embedding (TITAN, 768-d) with its projection head
    Linear(D, 128)→ReLU→Dropout(0.1); it learns no pooling. On a patch bag the parameter-free stand-in for
    the frozen slide encoder is the mean patch feature, and the projection is ModalSurv's.
    """

    is_bag = True

    def __init__(self, dim: int, out: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(dim, out), nn.ReLU(), nn.Dropout(dropout))
        self.out_dim = out

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        weights = mask.to(x.dtype) / mask.sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)
        return self.project(masked_mean(x, mask)), weights


@MODALITY_ENCODERS.register("abmil_gated")
def abmil_gated(dim: int, hidden: int = 512, attn_hidden: int | None = None, dropout: float = 0.25,
                xavier: bool = True) -> GatedABMIL:
    """Seed 002 sizes by default: 1024 → 512, attention 256, dropout 0.25, xavier-normal init."""
    return GatedABMIL(dim, hidden, attn_hidden, dropout, xavier)


@MODALITY_ENCODERS.register("mean_pool")
def mean_pool(dim: int, hidden: int | None = None, dropout: float = 0.0) -> MeanPoolMIL:
    return MeanPoolMIL(dim, hidden, dropout)


@MODALITY_ENCODERS.register("slide_projection")
def slide_projection(dim: int, out: int = 128, dropout: float = 0.1) -> SlideProjection:
    """ModalSurv's projection head on the mean patch feature (a frozen slide embedding)."""
    return SlideProjection(dim, out, dropout)
