"""Deadline-aware progressive extraction: the order, the planner, a cut bag, ten slides, fixed-rate reproducibility.
The clock's inputs, guard and bounds on the other steps: test_clock_faults.py."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest
from test_slide_fixtures import make_slide

from chimera_surv.case import SlideInput
from chimera_surv.deadline import CaseClock, Deadline, ExtractionClock, ladder_floor
from chimera_surv.encoders import load_encoder
from chimera_surv.features import FeatureRecipe, extract_case_bag
from chimera_surv.tiling import progressive_order

# 96-px patches at 0.25 µm/px: about 480 patches (30 batches) on the default synthetic slide
DENSE = FeatureRecipe(encoder="test-tiny", weights="seeded", time_budget_s=None, batch_size=16, target_mpp=0.25,
                      patch_size=96)


class SlowEncoder:
    """The seeded tiny encoder, slowed to a known rate so that a deadline bites on any machine."""

    def __init__(self, seconds_per_batch: float) -> None:
        self.inner = load_encoder("test-tiny", None, "cpu", weights="seeded")
        self.spec, self.mean = self.inner.spec, self.inner.mean
        self.delay = seconds_per_batch

    def embed(self, patches):
        time.sleep(self.delay)
        return self.inner.embed(patches)


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> SlideInput:
    wsi, mask, _ = make_slide(tmp_path_factory.mktemp("deadline"), "a")
    return SlideInput(0, wsi, mask)


def test_every_prefix_of_the_progressive_order_covers_the_grid() -> None:
    side = 32
    cells = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)
    order = progressive_order(cells)
    assert sorted(order.tolist()) == list(range(side * side))
    assert np.array_equal(order, progressive_order(cells))
    for level in (1, 2, 3):  # the first 4^level cells fall one into each of the 4^level equal squares
        quads = 1 << level
        first = cells[order[: quads * quads]] // (side // quads)
        assert len({tuple(q) for q in first.tolist()}) == quads * quads
    assert progressive_order(np.zeros((0, 2))).size == 0 and progressive_order(cells[:1]).tolist() == [0]


def test_ladder_rounds_down_to_coarse_steps() -> None:
    assert [ladder_floor(n) for n in (0, 1, 2, 3, 4, 5)] == [0, 1, 2, 3, 4, 5]
    values = {ladder_floor(n) for n in range(1, 2000)}
    assert all(ladder_floor(v) == v for v in values)
    assert all(ladder_floor(n) <= n and ladder_floor(n) > n / 2 ** 0.25 - 1 for n in range(1, 2000))
    assert len(values) < 40  # coarse: a few % of rate jitter rarely moves the plan


def test_clock_with_a_fixed_rate_plans_without_timing() -> None:
    clock = ExtractionClock(Deadline(ends_at=time.monotonic() + 100, seconds=10.0, fixed_rate=64.0), total=10_000)
    encoded = 0
    while count := clock.take(32):
        clock.batch_done(count)
        encoded += count
    assert clock.reason == "planned" and clock.plan_from == "budget"
    assert encoded == 32 * ladder_floor(10 * 64 // 32)
    free = ExtractionClock(None, total=100)
    assert free.take(32) == 32
    # the time already spent counts: 10 s of budget of which 4 s remain plans 4 s worth, not 10 s
    late = ExtractionClock(Deadline(ends_at=time.monotonic() + 4, seconds=10.0, fixed_rate=64.0), total=10_000)
    encoded = 0
    while count := late.take(32):
        late.batch_done(count)
        encoded += count
    assert late.plan_from == "remaining" and encoded <= 32 * ladder_floor(4 * 64 // 32)


def test_a_tiny_deadline_cuts_the_bag_to_an_even_prefix_in_time(slide, caplog) -> None:
    full, _ = extract_case_bag([slide], DENSE, None)
    encoder = SlowEncoder(0.15)  # 30 batches: 4.5 s of encoding for the whole slide
    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        cut, issues = extract_case_bag([slide], DENSE, None, encoder=encoder, deadline=Deadline.after(3.0))
    elapsed = time.monotonic() - started
    assert 16 <= len(cut) < len(full)  # at least a batch's worth, however busy the machine
    assert elapsed < 3.0 + 0.2  # the plan or the guard stops encoding before it; assembling the bag is the reserve's
    assert any("deadline reached" in issue for issue in issues)
    assert any(r.message.startswith("DEGRADED") and "deadline" in r.message for r in caplog.records)
    assert any(r.message.startswith("EXTRACT") for r in caplog.records)
    # the kept patches are encoded as in the full run (a batch the guard cut into pieces only to float rounding
    # of a smaller batch), and spread over the whole tissue
    rows = {tuple(c): i for i, c in enumerate(full.coords.tolist())}
    index = np.asarray([rows[tuple(c)] for c in cut.coords.tolist()])
    np.testing.assert_allclose(cut.features, full.features[index], rtol=0, atol=1e-6)
    span_full = np.ptp(full.coords[:, 1:], axis=0)
    assert (np.ptp(cut.coords[:, 1:], axis=0) > 0.6 * span_full).all()


def test_same_deadline_and_fixed_rate_give_the_same_bytes(slide) -> None:
    # CHIMERA_PATCH_RATE=20: the plan is 10 s x 20/s = 200 patches -> 11 batches
    one, _ = extract_case_bag([slide], DENSE, None, deadline=Deadline.after(10.0, fixed_rate=20.0))
    two, _ = extract_case_bag([slide], DENSE, None, deadline=Deadline.after(10.0, fixed_rate=20.0))
    assert len(one) == 16 * ladder_floor(200 // 16) < 480
    assert one.features.tobytes() == two.features.tobytes() and np.array_equal(one.coords, two.coords)


def test_ten_slides_share_the_deadline_by_size(tmp_path: Path) -> None:
    slides = []
    for k in range(10):
        wsi, mask, _ = make_slide(tmp_path, f"s{k}", height=768, width=768 + 512 * (k % 3), seed=k)
        slides.append(SlideInput(k, wsi, mask))
    recipe = FeatureRecipe.from_dict({**DENSE.to_dict(), "batch_size": 4})  # small slides: small batches
    full, _ = extract_case_bag(slides, recipe, None)
    clock = CaseClock(seconds=8.0, reserve_s=1.0)  # what inference.py builds from --deadline: 7 s for the slides
    cut, _ = extract_case_bag(slides, recipe, None, encoder=SlowEncoder(0.08), deadline=clock.slides())  # 9 s
    elapsed = time.monotonic() - clock.started
    assert elapsed < 8.0  # within the case's deadline: the slides stop at 7 s, the reserve is for the rest
    assert 0 < len(cut) < len(full)
    kept = np.bincount(cut.coords[:, 0], minlength=10) / np.bincount(full.coords[:, 0], minlength=10)
    assert (kept > 0).all()  # every slide is represented, in proportion to its size
    assert kept.max() - kept.min() < 0.35
