"""Split protocols: repeated stratified k-fold (event × cohort), inner validation splits, cohort-held-out splits.

Why inner splits: early stopping and model selection look only at an inner validation part of the training fold,
never at the reported fold (the leak behind the teams' 0.08-0.23 C-index optimism, anchors.md §1.3).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit


@dataclass(frozen=True)
class Split:
    """One train/test split; `name` identifies it in reports and in the resumable work folder."""

    name: str
    train: tuple[int, ...]
    test: tuple[int, ...]
    repeat: int = 0
    fold: int = 0


def member_name(split: Split, seed_index: int = 0) -> str:
    """An exported member's name: `member<fold>`, with `r<repeat>` from the second member repeat on
    (`protocol.member_repeats`) and `s<j>` for a network's further seeds, so no two members share a name."""
    return (f"member{split.fold}" + (f"r{split.repeat}" if split.repeat else "")
            + (f"s{seed_index}" if seed_index else ""))


def strata(outcome: list[int], cohorts: list[str], k: int) -> np.ndarray:
    """event×cohort labels; falls back to the event alone when a combined stratum has fewer than k members, and to
    no strata when no event class has k members (a 5-patient held-out site split 5 ways: sklearn refuses it)."""
    combined = [f"{o}|{c}" for o, c in zip(outcome, cohorts)]
    if min(Counter(combined).values()) >= k:
        return np.array(combined)
    if max(Counter(outcome).values()) >= k:
        return np.array([str(o) for o in outcome])
    return np.array(["all"] * len(outcome))


def repeated_kfold(outcome: list[int], cohorts: list[str], k: int, repeats: int, seed: int) -> list[Split]:
    """`repeats` × k stratified folds; repeat r shuffles with seed + r."""
    labels = strata(outcome, cohorts, k)
    splits = []
    placeholder = np.zeros(len(labels))
    for repeat in range(repeats):
        folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed + repeat)
        for fold, (train, test) in enumerate(folds.split(placeholder, labels)):
            splits.append(Split(f"r{repeat}f{fold}", tuple(int(i) for i in train), tuple(int(i) for i in test),
                                repeat, fold))
    return splits


def inner_split(indices: tuple[int, ...] | list[int], outcome: list[int], cohorts: list[str], fraction: float,
                seed: int) -> tuple[list[int], list[int]]:
    """(inner train, inner validation) of a training fold, stratified like the outer folds."""
    indices = np.asarray(indices)
    sub_outcome = [outcome[i] for i in indices]
    sub_cohorts = [cohorts[i] for i in indices]
    n_val = max(2, round(fraction * len(indices)))
    # event × cohort, else the event alone, else none: a stratified split needs >= 2 of each class and at least
    # one of each on both sides (a small inner training part, e.g. 16 patients in 4 strata, has a 3-patient side)
    candidates = (strata(sub_outcome, sub_cohorts, 2), np.array([str(o) for o in sub_outcome]))
    labels = next((c for c in candidates if _stratifiable(c, n_val)), np.zeros(len(indices), dtype=int))
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=seed)
    train, val = next(splitter.split(np.zeros(len(indices)), labels))
    return sorted(int(i) for i in indices[train]), sorted(int(i) for i in indices[val])


def _stratifiable(labels: np.ndarray, n_val: int) -> bool:
    counts = Counter(labels.tolist())
    return min(counts.values()) >= 2 and len(counts) <= min(n_val, len(labels) - n_val)


HOLDOUT_MIN_SIZE = 5  # patients a cohort needs to be held out (or to train the others' held-out split)


def cohort_holdout(cohorts: list[str], min_size: int = HOLDOUT_MIN_SIZE) -> list[Split]:
    """Train on every other cohort, test on one (3A → 3B and back); needs at least two cohorts of `min_size`."""
    names = sorted(c for c, n in Counter(cohorts).items() if n >= min_size)
    if len(names) < 2:
        return []
    splits = []
    for held in names:
        test = tuple(i for i, c in enumerate(cohorts) if c == held)
        train = tuple(i for i, c in enumerate(cohorts) if c != held)
        others = "+".join(n for n in sorted(set(cohorts)) if n != held)
        splits.append(Split(f"train_{others}__test_{held}", train, test))
    return splits
