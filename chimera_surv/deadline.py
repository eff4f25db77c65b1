"""The case clock: every time input parsed and bounded once, the deadline passed to each step it bounds.

Why: the platform kills a job that overruns its time limit, and the patch rate depends on hardware that is not
known in advance (a T4, a CPU-only phase, a host whose few cores starve the GPU). Patches are encoded in an order
whose every prefix covers the tissue evenly (`tiling.progressive_order`), so the extractor can stop anywhere and
still hold a representative bag. Two mechanisms decide where:
- the *plan* (reproducibility): after a few warm-up batches the measured rate (or `CHIMERA_PATCH_RATE`) fixes a
  whole number of batches, rounded down to a coarse ladder (steps of 2^(1/4)), so run-to-run jitter of the rate
  rarely changes the bag; a fixed rate makes the prefix a pure function of the deadline whenever it fits;
- the *guard* (safety): no piece of work starts unless its measured (or, before any measurement, a conservative
  prior) cost fits in what remains. The first batch starts with a one-patch probe, and every later batch is cut to
  the patches that fit, so a slow encoder can never overrun by a whole batch.
The clock is an object (`CaseClock`) handed to what it bounds (extraction, MRI, RNA, --explain): no module global.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

DEADLINE_ENV = "CHIMERA_DEADLINE_S"  # seconds for the whole case, counted from the process start
RESERVE_ENV = "CHIMERA_DEADLINE_RESERVE_S"  # seconds kept for everything after the slides (MRI, fusion, output)
RATE_ENV = "CHIMERA_PATCH_RATE"  # patches/s: plan from this instead of measuring (exactly reproducible)
DEFAULT_RESERVE_S = 60.0
MAX_SECONDS = 86_400.0  # one day: a longer deadline or reserve is clamped (the arithmetic stays finite)
RATE_RANGE = (1e-3, 1e6)  # patches/s: a fixed rate outside is clamped
LADDER_STEP = 2 ** 0.25  # the planned batch count is rounded down to round(LADDER_STEP ** k)
WARMUP_BATCHES = 1  # not timed: worker start-up, cuDNN autotuning, first-touch allocations
MEASURE_BATCHES = 3  # timed batches before the plan is made
PROBE_PATCHES = 1  # the first piece of work: its measured cost sizes everything after it
SAFETY = 1.25  # a measured cost is multiplied by this before it is compared with the time left
CPU_SLOWDOWN = 100.0  # the probe's prior: one patch at the encoder's T4 rate / this (a slow CPU)
OUTPUT_KEEP_S = 5.0  # kept after MRI/RNA for the fusion and writing the output (at most a tenth of the case)
EXIT_KEEP_S = 1.0  # kept after --explain for the process to exit (at most a fiftieth of the case)


# Conservative prior costs of the steps that run after the slides (seconds; measured costs replace them where a
# step repeats): a step starts only if its estimate fits in what remains (CaseClock.fits).
RNA_PRIOR_S = 2.0  # parse_rna of an already-read JSON (19,359 genes)
MRI_PRIOR_S = 5.0  # read, align and crop three sequences and a mask, plus MRI_PER_MB_S per MB of files
MRI_PER_MB_S = 0.2
MRI_ENCODER_S = 30.0  # added when the bundle embeds the MRI with a 3D CNN (load + one CPU forward)
EXPLAIN_MEMBER_PRIOR_S = 1.0  # one member's occlusion or attention map, plus EXPLAIN_PER_PATCH_S per patch
EXPLAIN_PER_PATCH_S = 2e-4
HEATMAP_PRIOR_S = 10.0  # the first heatmap (thumbnail read, matplotlib import, a 200 dpi PNG); later: measured


def mri_estimate_s(paths: list, kind: str = "measurements") -> float:
    """The prior cost of the MRI step from the size of its files."""
    size = 0
    for path in paths:
        try:
            size += path.stat().st_size if path is not None else 0
        except OSError:
            pass
    return MRI_PRIOR_S + MRI_PER_MB_S * size / 1e6 + (0.0 if kind == "measurements" else MRI_ENCODER_S)


class ClockInputError(ValueError):
    """A refused time input; the message is one line naming the flag or variable (exit 2 in inference.py)."""


def parse_seconds(raw: str | float, source: str, *, lowest: float, strict: bool, upper: float = MAX_SECONDS,
                  unit: str = "s") -> tuple[float, str | None]:
    """(value, note): a finite number >= `lowest` (> when `strict`), clamped to `upper` with a note.

    Raises ClockInputError for text, NaN, infinity or a value below the range: one line naming `source`.
    """
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ClockInputError(f"{source}={raw!r}: not a number") from None
    if not math.isfinite(value):
        raise ClockInputError(f"{source}={raw!r}: must be a finite number of {unit}")
    if value < lowest or (strict and value == lowest):
        relation = ">" if strict else ">="
        hint = " (leave it unset for no limit)" if source in ("--deadline", DEADLINE_ENV) else ""
        raise ClockInputError(f"{source}={raw!r}: must be {relation} {lowest:g} {unit}{hint}")
    if value > upper:
        return upper, f"{source}={raw!r} clamped to {upper:g} {unit}"
    return value, None


@dataclass(frozen=True)
class ClockSettings:
    """The parsed time inputs of one run: deadline (None = no limit), reserve, fixed patch rate (None = measure)."""

    deadline_s: float | None = None
    reserve_s: float = DEFAULT_RESERVE_S
    patch_rate: float | None = None
    notes: tuple[str, ...] = ()  # values that were clamped, one line each (logged at start)


def clock_settings(deadline: str | float | None = None, reserve: str | float | None = None,
                   environ: Mapping[str, str] | None = None) -> ClockSettings:
    """Parse and bound every time input once: flags first, then the environment. Raises ClockInputError.

    Deadline: > 0 s (0 or a negative value is refused, never read as "no limit"), at most a day. Reserve: >= 0 s.
    Rate: > 0 patches/s, clamped to RATE_RANGE. NaN, infinity and text are refused.
    """
    environ = {} if environ is None else environ
    notes: list[str] = []

    def pick(flag: str, value: str | float | None, env: str) -> tuple[str | float | None, str]:
        if value is not None and str(value).strip() != "":
            return value, flag
        raw = str(environ.get(env, "")).strip()
        return (raw or None), env

    raw, source = pick("--deadline", deadline, DEADLINE_ENV)
    seconds = None
    if raw is not None:
        seconds, note = parse_seconds(raw, source, lowest=0.0, strict=True)
        notes += [note] if note else []
    raw, source = pick("--deadline-reserve", reserve, RESERVE_ENV)
    reserve_s = DEFAULT_RESERVE_S
    if raw is not None:
        reserve_s, note = parse_seconds(raw, source, lowest=0.0, strict=False)
        notes += [note] if note else []
    raw = str(environ.get(RATE_ENV, "")).strip() or None
    rate = None
    if raw is not None:
        rate, note = parse_seconds(raw, RATE_ENV, lowest=0.0, strict=True, upper=RATE_RANGE[1], unit="patches/s")
        if rate < RATE_RANGE[0]:
            rate, note = RATE_RANGE[0], f"{RATE_ENV}={raw!r} clamped to {RATE_RANGE[0]:g} patches/s"
        notes += [note] if note else []
    return ClockSettings(seconds, reserve_s, rate, tuple(notes))


def bounded(seconds: float) -> float:
    """A duration made safe for arithmetic: NaN -> 0, clamped to [0, MAX_SECONDS]."""
    seconds = float(seconds)
    return 0.0 if math.isnan(seconds) else min(max(seconds, 0.0), MAX_SECONDS)


@dataclass(frozen=True)
class Deadline:
    """An absolute time limit (`time.monotonic()` seconds) for slide extraction.

    `seconds` is the length of the budget (what a fixed-rate plan is computed from); `fixed_rate` (patches/s, from
    `CHIMERA_PATCH_RATE`) replaces the measured rate in the plan.
    """

    ends_at: float
    seconds: float = 0.0
    fixed_rate: float | None = None

    @classmethod
    def after(cls, seconds: float, started: float | None = None, fixed_rate: float | None = None) -> Deadline:
        seconds = bounded(seconds)
        rate = None if fixed_rate is None else min(max(float(fixed_rate), RATE_RANGE[0]), RATE_RANGE[1])
        return cls((time.monotonic() if started is None else started) + seconds, seconds, rate)

    def remaining(self, now: float | None = None) -> float:
        return self.ends_at - (time.monotonic() if now is None else now)


@dataclass(frozen=True)
class CaseClock:
    """The time limit of one case, handed to every step it bounds (`predict_case(clock=...)`).

    `seconds` None means no limit: every check then passes. The slides must be done `reserve_s` before the end
    (a tenth of the case when the reserve is not shorter than the case); MRI and RNA then run only if their
    estimated cost still fits before the time kept for the fusion and the output; --explain only if it fits
    before the end, after the output is written.
    """

    started: float = field(default_factory=time.monotonic)
    seconds: float | None = None
    reserve_s: float = DEFAULT_RESERVE_S
    patch_rate: float | None = None

    @classmethod
    def start(cls, settings: ClockSettings, started: float | None = None) -> CaseClock:
        return cls(time.monotonic() if started is None else started,
                   None if settings.deadline_s is None else bounded(settings.deadline_s),
                   bounded(settings.reserve_s), settings.patch_rate)

    @property
    def limited(self) -> bool:
        return self.seconds is not None

    def remaining(self, now: float | None = None) -> float:
        """Seconds left for the whole case (infinite without a limit)."""
        if self.seconds is None:
            return math.inf
        return self.started + self.seconds - (time.monotonic() if now is None else now)

    def slides_seconds(self) -> float | None:
        if self.seconds is None:
            return None
        reserve = self.reserve_s if self.reserve_s < self.seconds else 0.1 * self.seconds
        return self.seconds - reserve

    def slides(self) -> Deadline | None:
        """The extraction deadline: `reserve_s` before the end of the case."""
        budget = self.slides_seconds()
        return None if budget is None else Deadline.after(budget, self.started, self.patch_rate)

    def output_keep(self) -> float:
        return 0.0 if self.seconds is None else min(OUTPUT_KEEP_S, 0.1 * self.seconds)

    def exit_keep(self) -> float:
        return 0.0 if self.seconds is None else min(EXIT_KEEP_S, 0.02 * self.seconds)

    def fits(self, estimate_s: float, keep_s: float = 0.0) -> bool:
        """Whether a step of `estimate_s` seconds can start now and still leave `keep_s` before the end."""
        return self.remaining() - keep_s >= estimate_s

    def shortfall(self, what: str, estimate_s: float, keep_s: float = 0.0) -> str:
        """The DEGRADED cause when `what` does not fit (`keep_s` is what the step must leave at the end)."""
        return (f"deadline: {max(0.0, self.remaining() - keep_s):.1f} s of the case's {self.seconds:g} s left "
                f"(keeping {keep_s:.1f} s), {what} needs about {estimate_s:.1f} s (estimated)")


_LADDER = sorted({round(LADDER_STEP ** k) for k in range(160)})  # 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 16, ...


def ladder_floor(count: int) -> int:
    """The largest ladder value round(LADDER_STEP ** k) that is <= count (0 for count < 1)."""
    if count < 1:
        return 0
    return _LADDER[bisect.bisect_right(_LADDER, count) - 1]


@dataclass
class ExtractionClock:
    """Says how many of the next patches to encode (`take`), from the plan and the guard.

    `total` patches in the order; `prior_patch_s` the conservative cost of one patch before anything is measured
    (the probe's prior). The caller encodes exactly what `take` returns and reports each piece with `batch_done`
    (on a pipelined GPU, one piece may be pending while the next is taken).
    """

    deadline: Deadline | None
    total: int
    prior_patch_s: float = 0.0
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    submitted: int = 0
    batches: int = 0  # batches of the block plan started (pieces of one batch count once)
    pieces: int = 0
    plan_batches: int | None = None
    plan_from: str | None = None  # "budget" (a pure function of it) or "remaining" (time already spent cut it)
    rate: float | None = None
    reason: str = "complete"
    _mark: float | None = None
    _probe: tuple[int, float] | None = None
    _recent: deque = field(default_factory=lambda: deque(maxlen=8))
    _timed: tuple[float, int] | None = None

    def __post_init__(self) -> None:
        if self.deadline is not None and self.deadline.fixed_rate:
            self.rate = float(self.deadline.fixed_rate)
            self.plan_batches = -1  # planned lazily from the first batch size (needs no timing)

    @property
    def fixed_rate(self) -> float | None:
        return None if self.deadline is None else self.deadline.fixed_rate

    @property
    def measured(self) -> bool:
        return self._probe is not None

    def take(self, available: int, new_batch: bool = True) -> int:
        """How many of the next `available` patches to encode now (0 = stop). `new_batch`: they start a batch of
        the block plan (the plan counts batches); False for the rest of a batch already cut."""
        if self.deadline is None or available <= 0:
            return self._count(available, new_batch)
        now = time.monotonic()
        if self._mark is None:
            self._mark = now  # the first batch is here: what comes before (worker start-up) is not a patch cost
        if new_batch and self._stop_by_plan(now, available):
            self.reason = "planned"
            return 0
        remaining = self.deadline.remaining(now)
        pending = self.submitted - self.done
        if pending:  # queued on the GPU, not finished: its cost comes first
            remaining -= SAFETY * (self.estimate(pending) or pending * self.prior_patch_s)
        if not self.measured:  # no probe was run: size from the conservative prior alone
            count = min(available, int(max(0.0, remaining) / max(SAFETY * self.prior_patch_s, 1e-9)))
        else:
            count = self._fit(available, remaining)
        if count <= 0:
            self.reason = "deadline"
            return 0
        return self._count(count, new_batch)

    def can_start(self) -> bool:
        """Whether even the probe fits: False skips reading the slides at all (reason "deadline")."""
        if self.deadline is None or self.deadline.remaining() > SAFETY * PROBE_PATCHES * self.prior_patch_s:
            return True
        self.reason = "deadline"
        return False

    def needs_probe(self) -> bool:
        """Under a deadline, before the first batch: time PROBE_PATCHES patches (encoded again in their batch, so
        the batches, and so the features, stay those of a run without a deadline) and report `probe_done`."""
        return self.deadline is not None and self._probe is None

    def probe_fits(self) -> bool:
        if self.deadline.remaining() > SAFETY * PROBE_PATCHES * self.prior_patch_s:
            return True
        self.reason = "deadline"
        return False

    def probe_done(self, size: int, seconds: float) -> None:
        self._probe = (size, seconds)
        self._mark = time.monotonic()

    def _count(self, count: int, new_batch: bool) -> int:
        self.batches += int(new_batch and count > 0)
        self.pieces += int(count > 0)
        self.submitted += count
        return count

    def batch_done(self, size: int) -> None:
        """A piece of `size` patches finished: its cycle (fetch + encode since the last finish) is measured."""
        now = time.monotonic()
        self.done += size
        if self.deadline is None or size <= 0:
            return
        observation = (size, now - (self._mark if self._mark is not None else now))
        self._mark = now
        self._recent.append(observation)

    def estimate(self, count: int) -> float | None:
        """Seconds to encode `count` more patches, from what was measured (None before the probe).

        Two upper bounds, valid when a piece's cost grows with its size and its cost per patch does not: the
        time of the nearest observed piece at least as large, and `count` times the per-patch cost of the nearest
        one at most as large (the probe is always kept for the latter). The smaller bound is used; among recent
        pieces of that size, the worst.
        """
        seen = list(self._recent) + ([self._probe] if self._probe is not None else [])
        if not seen:
            return None
        bounds = [math.inf]
        larger = [s for s, _ in seen if s >= count]
        if larger:
            bounds.append(max(t for s, t in seen if s == min(larger)))
        smaller = [s for s, _ in seen if s <= count]
        if smaller:
            nearest = max(smaller)
            bounds.append(max(t for s, t in seen if s == nearest) * count / nearest)
        return min(bounds)

    def _fit(self, available: int, remaining: float) -> int:
        """The largest count <= available whose estimate (times SAFETY) fits in `remaining` (binary search)."""
        lo, hi = 0, available
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if SAFETY * (self.estimate(mid) or math.inf) <= remaining:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _stop_by_plan(self, now: float, batch_size: int) -> bool:
        if self.plan_batches == -1:  # the fixed rate: a pure function of the budget unless time already spent cuts it
            self._plan(self.deadline.seconds, batch_size, now)
        elif self.plan_batches is None and self.batches == WARMUP_BATCHES:
            self._timed = (now, self.done)
        elif self.plan_batches is None and self.batches == WARMUP_BATCHES + MEASURE_BATCHES and self._timed:
            since, done = self._timed
            self.rate = (self.done - done) / max(now - since, 1e-6)
            self._plan(self.deadline.remaining(now), batch_size, now)
        return self.plan_batches is not None and self.batches >= self.plan_batches

    def _plan(self, budget_s: float, batch_size: int, now: float) -> None:
        rate, size = self.rate or 0.0, max(batch_size, 1)
        count = ladder_floor(int(min(max(0.0, budget_s) * rate, 1e15) // size))
        self.plan_from = "budget"
        remaining = self.deadline.remaining(now)
        if rate > 0 and count * size / rate > remaining:  # the time spent before the slides does not fit the plan
            count = ladder_floor(int(min(max(0.0, remaining) * rate, 1e15) // size))
            self.plan_from = "remaining"
        # at least one batch when planned before any (the guard still bounds it by its measured cost)
        self.plan_batches = self.batches + (max(1, count) if self.batches == 0 else count)

    def measured_rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def summary(self) -> dict[str, object]:
        cut = self.done < self.total
        return {"done": self.done, "total": self.total, "batches": self.batches, "pieces": self.pieces,
                "rate_per_s": round(self.measured_rate(), 3),
                "planning_rate_per_s": None if self.rate is None else round(self.rate, 3),
                "planned_batches": self.plan_batches, "plan_from": self.plan_from,
                "stopped": self.reason if cut else "complete", "fixed_rate": self.fixed_rate is not None}

    def log(self) -> None:
        summary = self.summary()
        log.info("EXTRACT %s", json.dumps(summary, sort_keys=True))
        if self.done < self.total:
            log.warning("DEGRADED %s", json.dumps({
                "stage": "wsi", "cause": f"deadline: {self.done} of {self.total} patches encoded at "
                                         f"{summary['rate_per_s']} patches/s ({summary['stopped']})",
                "action": "bag is the spatially stratified prefix reached"}, sort_keys=True))
