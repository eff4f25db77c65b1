"""The anchors step on small sites: a split it cannot fit or score is left out with its reason, and CoxNet's inner
CV skips folds without an event (scikit-survival raised 'All samples are censored' and stopped the step)."""

from __future__ import annotations

import numpy as np
from sksurv.util import Surv

from train.anchors import _unusable, coxnet_anchor


def test_a_split_without_an_event_to_fit_or_a_pair_to_rank_is_named():
    event = np.array([0, 0, 0, 1, 0, 1], bool)
    time = np.array([5.0, 6, 7, 1, 9, 2])
    assert _unusable(event, time, np.array([0, 1, 2]), np.array([3, 4, 5])) == \
        "its training part (3 patients) has no event"
    assert _unusable(event, time, np.array([3, 5]), np.array([0, 1, 2])) == \
        "its test part (3 patients) has no comparable pair"
    assert _unusable(event, time, np.array([0, 3]), np.array([1, 4, 5])) is None


def test_coxnet_anchor_survives_inner_folds_without_an_event():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 3))
    event = np.zeros(12, bool)
    event[[0, 1]] = True  # two events: some of the 3 inner folds have none
    y = Surv.from_arrays(event, rng.uniform(1, 10, 12))
    model = coxnet_anchor(X, y, seed=0)
    assert np.isfinite(X @ model.coef_[:, -1]).all()


def test_a_part_whose_only_events_come_last_has_no_comparable_pair():
    """An inner validation fold with one event, at its latest time, has no pair (sksurv raises there)."""
    from train.anchors import _has_pair

    assert not _has_pair(np.array([False, False, True]), np.array([1.0, 2.0, 3.0]))
    assert _has_pair(np.array([True, False, False]), np.array([1.0, 2.0, 3.0]))
