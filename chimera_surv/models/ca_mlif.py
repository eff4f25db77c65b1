"""CA-MLIF (seed 001, An et al., AAAI-25) as the paper describes it (seed-methods.md §2.2–2.4).

Stage 1: per-modality token encoders → encoder transformers (cls + two pre-LN self-attention layers, eq. 1–2)
→ bidirectional cross-attention → decoder transformers. Stage 2: MLIF (MAM → LMF, shared weights) on the
encoder cls pair (P, C) and on the decoder cls pair (P̂, Ĉ), OWC over [LMF(P,C); LMF(P̂,Ĉ); P; C] (eq. 5),
then the final MLP, which also takes the clinical features ("the multimodal features are combined with
clinical information"). The released code (one layer, CMTA-style scaled-dot-product CA, no clinical input)
is the paper's skeleton; where the two differ the paper is followed and the code's form stays selectable
(``ca_mode="standard"``, ``layers=1``, ``clinical=None``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from chimera_surv.models.fusion import FUSIONS, Embeddings, Fusion, FusionOut, LowRankMultimodal, _need
from chimera_surv.survival.losses import l1_alignment_loss


class TokenTransformer(nn.Module):
    """Encoder/decoder: prepend cls; ``layers`` × (x ← x + Drop(MHSA(LN(x)))) (eq. 1–2, no FFN); final LN.

    The paper has two layers (eq. 1–2), the released code one; the final LN is the code's. Exact softmax
    attention replaces the code's Nyström approximation (sequences here are a handful of tokens).
    """

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.25, layers: int = 2) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError("a token transformer needs at least one layer")
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 1e-6)
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(layers)])
        self.attns = nn.ModuleList([nn.MultiheadAttention(dim, heads, batch_first=True) for _ in range(layers)])
        self.drop = nn.Dropout(dropout)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        for norm, attn in zip(self.norms, self.attns):
            y = norm(x)
            x = x + self.drop(attn(y, y, y, need_weights=False)[0])
        x = self.norm_out(x)
        return x[:, 0], x[:, 1:]


class _Branch(nn.Module):
    """One modality's linear encodings in the paper's CA: X^inter, X^res, K, V (each Linear(d, d))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.inter, self.res = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim)


class EfficientCrossAttention(nn.Module):
    """The paper's CA (eq. 3–4): G_m = K_mᵀ V_m / n_m per head; U_P = X_P^inter · sm(G_C), U_C = X_C^inter · sm(G_P);
    each path's output is U concatenated with the *other* modality's residual X^res.

    Reading (docs/models.md): "the participating result vector U is concatenated with the another modality
    residual vector X^res": P's output = [U_P ; X_C^res], C's = [U_C ; X_P^res]. The two sequences have
    different lengths in general (n_P vs n_C tokens) and the paper names no projection, so the concatenation
    is along the token axis and the decoder reads both parts. sm = softmax over G's rows (Shen et al.'s
    efficient attention normalises keys over the feature axis); heads = the encoder's (paper).
    """

    def __init__(self, dim: int, heads: int = 4) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError("dim must be divisible by heads")
        self.heads = heads
        self.p, self.c = _Branch(dim), _Branch(dim)

    def _split(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def _context(self, branch: _Branch, x: Tensor) -> Tensor:
        k, v = self._split(branch.key(x)), self._split(branch.value(x))
        return torch.softmax(k.transpose(-1, -2) @ v / x.shape[1], dim=-1)  # (B, h, dh, dh)

    def _interact(self, branch: _Branch, x: Tensor, g_other: Tensor) -> Tensor:
        return (self._split(branch.inter(x)) @ g_other).transpose(1, 2).flatten(2)

    def forward(self, p: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        g_p, g_c = self._context(self.p, p), self._context(self.c, c)
        u_p, u_c = self._interact(self.p, p, g_c), self._interact(self.c, c, g_p)
        return torch.cat([u_p, self.c.res(c)], dim=1), torch.cat([u_c, self.p.res(p)], dim=1)


class StandardCrossAttention(nn.Module):
    """The released code's CA (CMTA-style): P̂-tokens = MHA(q=P, kv=C), Ĉ-tokens = MHA(q=C, kv=P); no residual."""

    def __init__(self, dim: int, heads: int = 1) -> None:
        super().__init__()
        self.attn_p = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.attn_c = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, p: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        return (self.attn_p(p, c, c, need_weights=False)[0], self.attn_c(c, p, p, need_weights=False)[0])


class MAM(nn.Module):
    """Pathomic-Fusion gated attention unit for one side: o = Drop(ReLU(W_o(σ(Bilinear(v1, v2)) ⊙ ReLU(W_h v))))."""

    def __init__(self, d_self: int, d1: int, d2: int, dropout: float = 0.25, gate: bool = True) -> None:
        super().__init__()
        self.gate = gate
        self.h = nn.Sequential(nn.Linear(d_self, d_self), nn.ReLU())
        self.z = nn.Bilinear(d1, d2, d_self) if gate else None
        self.o = nn.Sequential(nn.Linear(d_self, d_self), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, v: Tensor, v1: Tensor, v2: Tensor) -> Tensor:
        if self.z is None:
            return self.o(v)  # PG-MLIF code with the gate off: W_o applied to v directly
        return self.o(torch.sigmoid(self.z(v1, v2)) * self.h(v))


@FUSIONS.register("ca_mlif")
class CAMLIF(Fusion):
    """CA-MLIF. The first token modality is P (pathology), the other token modalities form C.

    ``clinical`` (default "clinical") names the modality that goes straight into the final MLP instead of
    being tokenised; it is tokenised like the others when fewer than two modalities would remain.
    Token encoders (SNN: Linear→ELU→AlphaDropout, ``n_tokens`` per modality) → encoder transformers
    (``layers`` = 2, the paper) → CA (``ca_mode`` "efficient" = paper eq. 3–4 via ``ca_mlif_efficient``,
    "standard" = released code) → decoders → MLIF on (P, C) and (P̂, Ĉ), shared MAM → LMF → OWC over
    c = [g_enc; g_dec; P; C] (w = σ(W2 ReLU(W1 c))) → MLP([c ⊙ w; clinical]) = Linear→ReLU→Dropout.
    aux_loss = α·(L1(P.detach(), P̂) + L1(C.detach(), Ĉ)), α = 0.5 (eq. 6, CMTA's detach).
    """

    def __init__(self, dims: dict[str, int], dim: int = 64, n_tokens: int = 4, heads: int = 4,
                 ca_mode: str = "standard", ca_heads: int | None = None, rank: int = 4, mmhid: int = 64,
                 gate: bool = True, dropout: float = 0.25, alpha: float = 0.5, layers: int = 2,
                 clinical: str | None = "clinical") -> None:
        super().__init__(dims)
        _need(dims, 2, "ca_mlif")
        self.dim, self.n_tokens, self.alpha = dim, n_tokens, alpha
        routed = clinical if clinical in dims and len(dims) >= 3 else None
        self.clinical = routed
        self.token_names = [m for m in self.names if m != routed]
        self.tokenize = nn.ModuleDict({
            m: nn.Sequential(nn.Linear(dims[m], n_tokens * dim), nn.ELU(), nn.AlphaDropout(dropout))
            for m in self.token_names})
        self.enc_p, self.enc_c = (TokenTransformer(dim, heads, dropout, layers) for _ in range(2))
        self.dec_p, self.dec_c = (TokenTransformer(dim, heads, dropout, layers) for _ in range(2))
        if ca_mode == "standard":
            self.ca: nn.Module = StandardCrossAttention(dim, ca_heads or 1)
        elif ca_mode == "efficient":
            self.ca = EfficientCrossAttention(dim, ca_heads or heads)
        else:
            raise ValueError(f"unknown ca_mode '{ca_mode}'")
        self.mam_p, self.mam_c = MAM(dim, dim, dim, dropout, gate), MAM(dim, dim, dim, dropout, gate)
        self.lmf = LowRankMultimodal([dim, dim], mmhid, rank)
        width = 2 * mmhid + 2 * dim
        self.owc = nn.Sequential(nn.Linear(width, width // 2), nn.ReLU(), nn.Linear(width // 2, width), nn.Sigmoid())
        extra = dims[routed] if routed else 0
        self.mlp = nn.Sequential(nn.Linear(width + extra, mmhid), nn.ReLU(), nn.Dropout(dropout))
        self.out_dim = mmhid

    def _tokens(self, m: str, x: Tensor) -> Tensor:
        return self.tokenize[m](x).view(x.shape[0], self.n_tokens, self.dim)

    def _mlif(self, p: Tensor, c: Tensor) -> Tensor:
        return self.lmf([self.mam_p(p, p, c), self.mam_c(c, p, c)])

    def forward(self, embs: Embeddings, present: Embeddings) -> FusionOut:
        first, rest = self.token_names[0], self.token_names[1:]
        p_tok = self._tokens(first, embs[first])
        c_tok = torch.cat([self._tokens(m, embs[m]) for m in rest], dim=1)
        p_cls, p_seq = self.enc_p(p_tok)
        c_cls, c_seq = self.enc_c(c_tok)
        p_cross, c_cross = self.ca(p_seq, c_seq)
        p_hat, _ = self.dec_p(p_cross)
        c_hat, _ = self.dec_c(c_cross)
        c = torch.cat([self._mlif(p_cls, c_cls), self._mlif(p_hat, c_hat), p_cls, c_cls], dim=1)
        weighted = c * self.owc(c)
        if self.clinical is not None:
            weighted = torch.cat([weighted, embs[self.clinical]], dim=1)
        aux = self.alpha * l1_alignment_loss([p_cls, c_cls], [p_hat, c_hat])
        return self.mlp(weighted), aux


@FUSIONS.register("ca_mlif_efficient")
def ca_mlif_efficient(dims: dict[str, int], **kwargs: Any) -> CAMLIF:
    """CA-MLIF with the paper's efficient cross-attention (eq. 3–4)."""
    return CAMLIF(dims, ca_mode="efficient", **kwargs)
