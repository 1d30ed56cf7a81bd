"""Wall-clock training budgets (`edgeseg train --time-budget 5m`).

The poly schedule needs its length, so a budgeted run times probe steps, then plans the total
number of iterations (``plan_iterations``). The warm-up's lr does not depend on the run's
length (``lr_factor``), so the probe runs to the warm-up's end (``probe_end``): planning there
is the same schedule as planning before step one.

A machine that gets busier after the probe (another job starts) would make a plan fixed once
overshoot the budget, so the run re-plans every ``replan_every`` iterations on the rate of the
steps since the last plan (``REPLAN_MARGIN``: the recent rate is a good predictor); when the
budget is spent the plan is the iterations done, and the run ends there. Re-planning is by
iteration count, not by time, so every rank of a distributed run re-plans at the same step.
The checkpoint stores the current plan; a resumed run continues it without re-planning.
"""

from __future__ import annotations

from edgeseg.durations import parse_duration
from edgeseg.errors import EdgesegError

__all__ = [
    "BUDGET_MARGIN", "PROBE_SKIP", "PROBE_STEPS", "REPLAN_MARGIN", "REPLANS", "parse_duration",
    "plan_iterations", "probe_end", "replan_every",
]

PROBE_SKIP = 1  # the first step builds oneDNN primitives and starts the loader workers
PROBE_STEPS = 8  # fewest timed steps after it (the warm-up's end may come later)
# Steps on a shared or virtual CPU vary and drift over a run: the demo's 5-step probe
# once read 1.107 it/s where the run then averaged 0.92, so a 270 s budget took 317 s
# (docs/benchmarks.md, below "edgeseg demo: wall time per stage"). Planning for 90% of the
# probed rate keeps the budget a bound; the price is about 10% of the budget unused when the
# probe was right (the demo record: 268 s of 300).
BUDGET_MARGIN = 0.9
REPLAN_MARGIN = 0.97  # later plans: the rate of the last ~5% of the run, corrected again soon
REPLANS = 20  # about this many re-plans over a run: the overshoot is at most ~1/REPLANS


def plan_iterations(budget_s: float, elapsed_s: float, done: int, steps_per_s: float,
                    cap: int, margin: float = BUDGET_MARGIN) -> int:
    """Total iterations for a run that has spent ``elapsed_s`` of ``budget_s`` on ``done``
    iterations and now steps at ``steps_per_s``: what fits in the rest at ``margin`` times
    that rate, never more than ``cap`` (the configured ``iters``: a fast machine stops there,
    as without a budget) and never fewer than ``done``."""
    if not steps_per_s > 0:
        raise EdgesegError(f"time budget: step rate must be > 0, got {steps_per_s}")
    fit = done + int(max(0.0, budget_s - elapsed_s) * steps_per_s * margin)
    return max(done, min(cap, fit))


def probe_end(start: int, warmup_iters: int) -> int:
    """The iteration after which a run that starts at ``start`` fixes its length: at least
    ``PROBE_STEPS`` timed steps, and the rest of the warm-up. In three runs the rate over the
    demo's 30 warm-up steps came within 3% of the later rate, over steps 2-9 within 10%
    (docs/benchmarks.md, "Time budget: the probe against the run's rate")."""
    return max(start + PROBE_SKIP + PROBE_STEPS, warmup_iters)


def replan_every(planned: int, done: int) -> int:
    """Iterations between re-plans for a run planned at ``planned`` with ``done`` behind it."""
    return max(PROBE_STEPS, (planned - done) // REPLANS)
