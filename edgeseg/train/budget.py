"""Wall-clock training budgets (`edgeseg train --time-budget 5m`).

The poly schedule needs its length up front, so a budgeted run times probe steps, then fixes
the total number of iterations once (``plan_iterations``) and keeps it: the checkpoint stores it
and a resumed run continues the same schedule instead of measuring again. The warm-up's lr does
not depend on the run's length (``lr_factor``), so the probe runs to the warm-up's end
(``probe_end``): fixing the length there is the same schedule as fixing it before step one.
"""

from __future__ import annotations

import math
import re

from edgeseg.errors import EdgesegError

__all__ = [
    "BUDGET_MARGIN", "PROBE_SKIP", "PROBE_STEPS", "parse_duration", "plan_iterations", "probe_end",
]

PROBE_SKIP = 1  # the first step builds oneDNN primitives and starts the loader workers
PROBE_STEPS = 8  # fewest timed steps after it (the warm-up's end may come later)
# Steps on a shared or virtual CPU vary and drift over a run: the demo's 5-step probe
# once read 1.107 it/s where the run then averaged 0.92, so a 270 s budget took 317 s
# (docs/benchmarks.md, below "edgeseg demo: wall time per stage"). Planning for 90% of the
# probed rate keeps the budget a bound; the price is about 10% of the budget unused when the
# probe was right (the demo record: 268 s of 300).
BUDGET_MARGIN = 0.9

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str | float | int, what: str = "--time-budget") -> float:
    """``"5m"`` -> 300.0; also ``"90s"``, ``"1.5h"``, ``"1m30s"`` and plain seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        s = str(text).strip().lower()
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*(min|h|m|s|)", s)
        if not s or not parts or re.sub(r"(\d+(?:\.\d+)?)\s*(min|h|m|s|)", "", s).strip():
            raise EdgesegError(f"{what}: expected a duration such as 5m, 90s or 300, got '{text}'")
        seconds = sum(float(v) * _UNITS[u] for v, u in parts)
    if not (math.isfinite(seconds) and seconds > 0):
        raise EdgesegError(f"{what}: expected a positive duration, got '{text}'")
    return seconds


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
