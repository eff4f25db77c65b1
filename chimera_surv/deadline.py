"""The case deadline and the extraction clock that decides how much of the progressive patch order to encode.

Why: the platform kills a job that overruns its time limit, and the patch rate depends on hardware that is not
known in advance (a T4, a CPU-only phase, a host whose few cores starve the GPU). Patches are encoded in an order
whose every prefix covers the tissue evenly (`tiling.progressive_order`), so the extractor can stop anywhere and
still hold a representative bag. To keep "same hardware + same deadline -> same bytes" as far as timing allows,
the stop is *planned*: after a few warm-up batches the measured rate fixes a whole number of batches, rounded down
to a coarse ladder (steps of 2^(1/4)), so run-to-run jitter of the rate rarely changes the bag. A fixed rate
(`CHIMERA_PATCH_RATE`) removes the measurement altogether: the prefix is then a pure function of the deadline.
A hard stop at the deadline itself guards against a rate that drops after planning (logged as such).
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

DEADLINE_ENV = "CHIMERA_DEADLINE_S"  # seconds for the whole case, counted from the process start
RESERVE_ENV = "CHIMERA_DEADLINE_RESERVE_S"  # seconds kept for everything after the slides (MRI, fusion, output)
RATE_ENV = "CHIMERA_PATCH_RATE"  # patches/s: plan from this instead of measuring (exactly reproducible)
DEFAULT_RESERVE_S = 60.0
LADDER_STEP = 2 ** 0.25  # the planned batch count is rounded down to round(LADDER_STEP ** k)
WARMUP_BATCHES = 1  # not timed: worker start-up, cuDNN autotuning, first-touch allocations
MEASURE_BATCHES = 3  # timed batches before the plan is made


@dataclass(frozen=True)
class Deadline:
    """An absolute time limit (`time.monotonic()` seconds) for slide extraction."""

    ends_at: float
    seconds: float = 0.0  # the length of the extraction budget (what a fixed-rate plan is computed from)

    @classmethod
    def after(cls, seconds: float, started: float | None = None) -> Deadline:
        return cls((time.monotonic() if started is None else started) + float(seconds), float(seconds))

    def remaining(self, now: float | None = None) -> float:
        return self.ends_at - (time.monotonic() if now is None else now)


_CASE: dict[str, Deadline | None] = {"deadline": None}


def set_case_deadline(seconds: float | None, reserve_s: float | None = None, started: float | None = None
                      ) -> Deadline | None:
    """Called once by the entrypoint: slides must be done `reserve_s` before the case's `seconds` run out."""
    if seconds is None:
        _CASE["deadline"] = None
        return None
    reserve = DEFAULT_RESERVE_S if reserve_s is None else float(reserve_s)
    if reserve >= seconds:  # a tiny deadline: keep a tenth for the rest rather than nothing for the slides
        reserve = 0.1 * seconds
    _CASE["deadline"] = Deadline.after(seconds - reserve, started)
    return _CASE["deadline"]


def case_deadline() -> Deadline | None:
    """The deadline set by the entrypoint, or None (training, tests, no limit given)."""
    return _CASE["deadline"]


def env_seconds(name: str) -> float | None:
    """A positive float from the environment, else None; a malformed value is logged and ignored."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        log.warning("ignoring %s=%r: not a number", name, raw)
        return None
    return value if math.isfinite(value) and value > 0 else None


_LADDER = sorted({round(LADDER_STEP ** k) for k in range(160)})  # 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 16, ...


def ladder_floor(count: int) -> int:
    """The largest ladder value round(LADDER_STEP ** k) that is <= count (0 for count < 1)."""
    if count < 1:
        return 0
    return _LADDER[bisect.bisect_right(_LADDER, count) - 1]


@dataclass
class ExtractionClock:
    """Counts encoded batches and says when to stop; `plan_batches` is fixed once, from the rate.

    `total` patches in the order; `batch_sizes` the size of every batch in order (fixed by the block plan), so a
    planned patch count maps to a whole number of batches.
    """

    deadline: Deadline | None
    total: int
    fixed_rate: float | None = None
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    batches: int = 0
    plan_batches: int | None = None
    rate: float | None = None
    reason: str = "complete"
    _timed_from: float | None = None
    _timed_patches: int = 0

    def __post_init__(self) -> None:
        if self.deadline is not None and self.fixed_rate:
            self.rate = float(self.fixed_rate)
            self.plan_batches = -1  # planned lazily from the first batch size (needs no timing)

    def should_stop(self, next_batch: int, queued: int = 0) -> bool:
        """Before encoding a batch of `next_batch` patches (`queued` batches submitted, not yet done): go on?"""
        if self.deadline is None:
            return False
        if self.plan_batches == -1:  # a pure function of the budget and the given rate: no timing involved
            self._plan(self.deadline.seconds, next_batch)
        if self.plan_batches is not None and self.batches + queued >= self.plan_batches:
            self.reason = "planned"
            return True
        if self.batches + queued > 0 and self.deadline.remaining() <= 0:
            # the rate dropped after planning, or the plan was not made yet; one batch is always encoded
            self.reason = "deadline"
            return True
        return False

    def batch_done(self, size: int) -> None:
        now = time.monotonic()
        self.done += size
        self.batches += 1
        if self.deadline is None or self.plan_batches is not None:
            return
        if self.batches == WARMUP_BATCHES:
            self._timed_from = now
        elif self.batches > WARMUP_BATCHES:
            self._timed_patches += size
            if self.batches == WARMUP_BATCHES + MEASURE_BATCHES:
                self.rate = self._timed_patches / max(now - (self._timed_from or now), 1e-6)
                self._plan(self.deadline.remaining(now), size)

    def _plan(self, remaining_s: float, batch_size: int) -> None:
        more = max(0.0, remaining_s) * (self.rate or 0.0)
        # at least one batch: a bag of a few evenly spread patches is worth more than none
        self.plan_batches = max(1, self.batches + ladder_floor(int(more // max(batch_size, 1))))

    def measured_rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def summary(self) -> dict[str, object]:
        cut = self.done < self.total
        return {"done": self.done, "total": self.total, "batches": self.batches,
                "rate_per_s": round(self.measured_rate(), 1),
                "planning_rate_per_s": None if self.rate is None else round(self.rate, 1),
                "planned_batches": self.plan_batches, "stopped": self.reason if cut else "complete",
                "fixed_rate": self.fixed_rate is not None}

    def log(self) -> None:
        summary = self.summary()
        log.info("EXTRACT %s", json.dumps(summary, sort_keys=True))
        if self.done < self.total:
            log.warning("DEGRADED %s", json.dumps({
                "stage": "wsi", "cause": f"deadline: {self.done} of {self.total} patches encoded at "
                                         f"{summary['rate_per_s']} patches/s ({summary['stopped']})",
                "action": "bag is the spatially stratified prefix reached"}, sort_keys=True))
