"""Synthetic bulk RNA: per-gene means, the z-driven module and nuisance programs, fixed by the world seed."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from chimera_surv.synthetic.common import WORLD_SEED, _gene_uniforms, _stable_hash, load_gene_order

# ------------------------------------------------------------------------------------------------------------
# RNA
# ------------------------------------------------------------------------------------------------------------

MODULE_SIZE = 50
N_PROGRAMS = 6  # nuisance co-expression programs, so the data has structure besides z


@dataclass(frozen=True)
class RNAWorld:
    """Per-gene log-means, the z-module and cohort batch offsets for a gene list, all fixed by the world seed.

    Gene properties come from a hash of the gene name, so a gene behaves the same in any panel; the module
    is the MODULE_SIZE genes of the full CHIMERA list with the smallest world hash (always kept in a panel).
    """

    genes: tuple[str, ...]
    log_mean: np.ndarray  # natural-log mean expression per gene
    module_loading: np.ndarray  # shift of log expression per unit z (0 outside the module)
    program_loading: np.ndarray  # (N_PROGRAMS, G)
    batch_offset_b: np.ndarray  # cohort B log offset per gene
    dropout_scale: np.ndarray  # how prone a gene is to zero counts

    @classmethod
    def build(cls, genes: list[str]) -> RNAWorld:
        from scipy.special import ndtri

        u = _gene_uniforms(genes)  # (G, 8), fixed per gene name
        log_mean = 4.0 + 2.2 * ndtri(u[:, 0])  # DESeq2-normalised counts span ~1 to ~10^4
        module = set(module_genes())
        in_module = np.array([g in module for g in genes])
        sign = np.where(u[:, 1] < 0.5, -1.0, 1.0)
        loading = np.where(in_module, (0.35 + 0.5 * u[:, 2]) * sign, 0.0)
        value, member = _gene_uniforms(genes, "program"), _gene_uniforms(genes, "member")
        program = (ndtri(value[:, :N_PROGRAMS]) * (member[:, :N_PROGRAMS] < 0.3)).T
        batch = 0.15 + 0.25 * ndtri(u[:, 4])
        return cls(tuple(genes), log_mean, loading, 0.35 * program, batch, u[:, 5])

    def sample(self, z: float, cohort: str, rng: np.random.Generator) -> dict[str, float]:
        """One patient's expression: log-normal around the gene mean, the module shifted by z, zeros for low
        expression, a batch offset in cohort B. Values rounded to 3 decimals like exported tables."""
        programs = rng.standard_normal(N_PROGRAMS)
        log_expr = (
            self.log_mean
            + self.module_loading * z
            + programs @ self.program_loading
            + 0.45 * rng.standard_normal(len(self.genes))
        )
        if cohort == "B":
            log_expr = log_expr + self.batch_offset_b
        values = np.exp(log_expr)
        zero = rng.random(len(self.genes)) < np.exp(-values * (0.5 + self.dropout_scale))
        values = np.where(zero, 0.0, np.round(values, 3))
        return {g: float(v) for g, v in zip(self.genes, values, strict=True)}


@lru_cache(maxsize=1)
def module_genes() -> tuple[str, ...]:
    """The z-driven gene module: fixed by the world seed over the full CHIMERA gene list."""
    try:
        full = load_gene_order()
    except FileNotFoundError:
        return ()
    ranked = sorted(full, key=lambda g: _stable_hash(f"{WORLD_SEED}:module:{g}"))
    return tuple(sorted(ranked[:MODULE_SIZE]))


def gene_panel(size: int | None = None, genes: list[str] | None = None) -> list[str]:
    """The gene list to generate: `genes` if given, else the full CHIMERA list, or a `size`-gene subset of it
    that always contains the module (sorted, like gene_order.json)."""
    if genes is not None:
        return list(genes)
    full = load_gene_order()
    if size is None or size >= len(full):
        return full
    module = set(module_genes())
    rest = sorted((g for g in full if g not in module), key=lambda g: _stable_hash(f"{WORLD_SEED}:panel:{g}"))
    return sorted(list(module) + rest[: max(0, size - len(module))])


@lru_cache(maxsize=4)
def _rna_world(genes: tuple[str, ...]) -> RNAWorld:
    return RNAWorld.build(list(genes))


