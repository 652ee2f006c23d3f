"""The final choice among the best configs: a race (in the spirit of F-race / irace).

The contenders (the search's best `retime_top` configs and the default) are timed again,
interleaved (forward, then backward, ...) so that each meets the same conditions, round
after round. After each round every contender has a 95% interval: one round, the bootstrap
interval of that measurement's median (profilers.timing.bootstrap_ci); k >= 2 rounds, the
Student-t interval of the mean of its k round medians, never narrower than one round's own
interval. The t interval takes in the round-to-round noise that one measurement's interval
cannot see (a loaded host, clocks that moved); a bootstrap over k = 2 or 3 round medians would
not do: [min, max] of two draws covers their median half the time. From `min_rounds` on, a
contender whose interval lies wholly above the leader's (the lowest mean) is beaten and
drops out; the race ends when one is left
("separated") or its budget ends (`max_rounds`, `max_seconds`). At the end, the contenders
whose intervals still overlap the leader's are a near-tie: the default wins it when it is in
it (a searched config must beat the default beyond noise to be stored), else the one with
the lowest spread ((p90 - p10) / median, the median over its rounds) wins.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from kernels.spec import Config
from profilers.timing import Timing

from .outcome import Outcome

# Student's t, 97.5% quantile, for 1..10 degrees of freedom; past 10 the Cornish-Fisher
# first-order term (2.079 at 20, against 2.086 exact).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)

SEPARATED = "separated"   # one contender left: every other was beaten
ROUNDS = "rounds"         # the round budget ended with a near-tie
SECONDS = "seconds"       # the time budget ended with a near-tie


@dataclass(frozen=True)
class RaceBudget:
    """min_rounds: rounds before anyone may drop out or the race may end (2: one forward and
    one backward pass, so that drift over a round hits every contender alike); max_rounds:
    the most rounds; max_seconds: no round starts after this long (None: no time budget)."""

    min_rounds: int = 2
    max_rounds: int = 5
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.min_rounds < 1 or self.max_rounds < self.min_rounds:
            raise ValueError(f"race rounds: need 1 <= min_rounds <= max_rounds; got {self.min_rounds}, "
                             f"{self.max_rounds}")


@dataclass
class Contender:
    config: Config
    default: bool = False
    study_ms: float | None = None
    rounds: list[Timing] = field(default_factory=list)
    failure: str | None = None
    dropped_in: int | None = None  # the round after which it was beaten
    verdict: str = ""

    @property
    def estimate(self) -> float:
        """The mean of its round medians."""
        return statistics.fmean(t.median_ms for t in self.rounds)

    @property
    def interval(self) -> tuple[float, float]:
        if len(self.rounds) == 1:
            return self.rounds[0].interval
        return round_interval(self.rounds)

    @property
    def spread(self) -> float:
        return statistics.median(t.spread for t in self.rounds)

    def pooled(self) -> Timing | None:
        """One Timing for all its rounds: the mean of the round medians, the least p10 and the
        largest p90 (the envelope: it always holds that mean, where the median p90 of two
        far-apart interpreter rounds did not: 10.9 ms over a p90 of 10.3), the least min, the
        mean of the means, every repetition counted, the race's interval. None when it failed
        or never ran."""
        if self.failure is not None or not self.rounds:
            return None
        low, high = self.interval
        first = self.rounds[0]
        return replace(first, median_ms=self.estimate, p10_ms=min(t.p10_ms for t in self.rounds),
                       p90_ms=max(t.p90_ms for t in self.rounds),
                       min_ms=min(t.min_ms for t in self.rounds),
                       mean_ms=statistics.fmean(t.mean_ms for t in self.rounds),
                       reps=sum(t.reps for t in self.rounds), ci_low_ms=low, ci_high_ms=high)

    def to_dict(self) -> dict[str, Any]:
        pooled = self.pooled()
        return {"config": dict(self.config), "study_ms": self.study_ms, "default": self.default,
                "retimed": pooled.to_dict() if pooled else None, "rounds": len(self.rounds),
                "rounds_ms": [t.median_ms for t in self.rounds],
                "round_intervals_ms": [list(t.interval) for t in self.rounds],
                "interval_ms": list(pooled.interval) if pooled else None,
                "spread": self.spread if self.rounds and math.isfinite(self.spread) else None, "dropped_in_round": self.dropped_in,
                "verdict": self.verdict, "failure": self.failure}


@dataclass
class RaceResult:
    contenders: list[Contender]
    winner: Contender | None
    rounds: int
    stopped: str            # SEPARATED, ROUNDS or SECONDS ("" when no contender ran)
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "stopped": self.stopped, "seconds": self.seconds,
                "winner": dict(self.winner.config) if self.winner else None,
                "verdict": self.winner.verdict if self.winner else None}


def t975(df: int) -> float:
    """Student's t 97.5% quantile (a two-sided 95% interval) for `df` >= 1 degrees of freedom."""
    return _T975[df - 1] if df <= len(_T975) else 1.96 + (1.96 ** 3 + 1.96) / (4 * df)


def round_interval(rounds: list[Timing]) -> tuple[float, float]:
    """95% interval of the mean of >= 2 rounds' medians: mean +- t * sd / sqrt(k), at least
    as wide as the rounds' own intervals (their mean half-width), its low end at least 0. Pure."""
    medians = [t.median_ms for t in rounds]
    k = len(medians)
    mean = statistics.fmean(medians)
    half = t975(k - 1) * statistics.stdev(medians) / math.sqrt(k)
    own = statistics.fmean((t.interval[1] - t.interval[0]) / 2 for t in rounds)
    half = max(half, own)
    # A time is never negative: two noisy rounds on the interpreter (13.6 and 35.1 ms) gave
    # mean - half = -10.9 ms, which the database refuses as a ci_ms.
    return max(mean - half, 0.0), mean + half


def _alive(contenders: list[Contender]) -> list[Contender]:
    return [c for c in contenders if c.failure is None and c.dropped_in is None and c.rounds]


def _separated(leader: Contender, other: Contender) -> bool:
    return leader.interval[1] < other.interval[0]


def race(contenders: list[Contender], evaluate: Callable[[Config], Outcome], budget: RaceBudget = RaceBudget(),
         clock: Callable[[], float] = time.monotonic) -> RaceResult:
    """Run the race over `contenders` (in their given order: the searched ones best first,
    the default last), timing each with `evaluate(config)`; fills each contender's rounds,
    verdict and drop round. Returns the RaceResult (winner None when every contender
    failed)."""
    start = clock()
    rounds, stopped = 0, ""
    while rounds < budget.max_rounds:
        if budget.max_seconds is not None and rounds > 0 and clock() - start >= budget.max_seconds:
            stopped = SECONDS
            break
        running = [c for c in contenders if c.failure is None and c.dropped_in is None]
        if not running:
            break
        for c in (running if rounds % 2 == 0 else running[::-1]):
            outcome = evaluate(c.config)
            if outcome.ok and outcome.timing is not None:
                c.rounds.append(outcome.timing)
            else:
                c.failure = outcome.reason or outcome.status
                c.verdict = f"failed in round {rounds + 1}: {c.failure}"
        rounds += 1
        alive = _alive(contenders)
        if rounds >= budget.min_rounds and alive:
            leader = min(alive, key=lambda c: c.estimate)
            for c in alive:
                if c is not leader and _separated(leader, c):
                    c.dropped_in = rounds
                    c.verdict = f"beaten in round {rounds}: interval above the leader's"
            if len(_alive(contenders)) == 1:
                stopped = SEPARATED
                break
    else:
        stopped = ROUNDS
    alive = _alive(contenders)
    if not alive:
        return RaceResult(contenders, None, rounds, stopped, clock() - start)
    if len(alive) == 1:
        winner = alive[0]
        winner.verdict = ("won: the only contender" if len(contenders) == 1
                          else "won: its interval separated from every other contender's" if stopped == SEPARATED
                          else "won: every other contender failed")
    else:
        winner = _near_tie(alive, stopped)
    return RaceResult(contenders, winner, rounds, stopped or ROUNDS, clock() - start)


def _near_tie(alive: list[Contender], stopped: str) -> Contender:
    """The budget ended with contenders still racing: those overlapping the leader are a
    near-tie; the default wins it when in it, else the lowest spread does."""
    leader = min(alive, key=lambda c: c.estimate)
    tied = [c for c in alive if c is leader or not _separated(leader, c)]
    for c in alive:
        if c not in tied:
            c.verdict = "beaten at the end: interval above the leader's"
    budget = "time" if stopped == SECONDS else "round"
    default = next((c for c in tied if c.default), None)
    if default is not None and len(tied) > 1:
        winner = default
        winner.verdict = f"won: default kept on a near-tie ({budget} budget ended, intervals overlapping)"
        lost = "near-tie: the default is kept unless beaten beyond noise"
    else:
        winner = min(tied, key=lambda c: (c.spread, c.estimate))
        winner.verdict = (f"won: near-tie broken by the lower spread ({budget} budget ended)" if len(tied) > 1
                          else "won: the only one left")
        lost = "near-tie: lost on spread"
    for c in tied:
        if c is not winner:
            c.verdict = lost
    return winner
