"""Which configuration tune measures next: near the target first, not the largest first.

The roofline ceiling (:mod:`edgeseg.tune.prune`) bounds a configuration's FPS but says little
about what it reaches: a CPU runs DESANet at a fraction of its peak, and INT8 at a smaller
fraction of its (4x) peak. Measuring in ladder order from the largest size spends a short
budget on sizes far below the target. So:

1. the first measurement is the cheapest probe: the smallest FP32 configuration (no
   calibration to run), which gives the machine's efficiency (measured FPS / ceiling);
2. every later pick predicts each configuration's FPS as its ceiling x the efficiency measured
   so far for its precision (FP32's where its own has not been measured yet), and measures the
   most promising (largest, FP32, native DCN: the likely most accurate) of those predicted to
   reach the target within :data:`MARGIN`; when none is, the one predicted fastest;
3. when none is predicted even within :data:`FAR` x the target, the target is out of reach:
   the pick will be the fastest configuration within the accuracy bound, so the likely most
   accurate are measured next (the probe already measured a fast one).

The pick itself is :func:`edgeseg.tune.tune.pick_config`; this only orders the measurements.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from edgeseg.tune.prune import Candidate, promise

__all__ = ["FAR", "MARGIN", "Schedule"]

MARGIN = 0.8  # predicted >= 0.8 x target counts as "may reach it" (the estimate's error)
FAR = 0.5  # predicted below half the target: measured only when nothing else is left


@dataclass
class Schedule:
    """The measuring order of ``candidates`` for ``target_fps``; feed it every measured FPS."""

    candidates: list[Candidate]
    target_fps: float
    _left: list[Candidate] = field(init=False)
    _ratios: dict[str, list[float]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._left = list(self.candidates)

    @property
    def left(self) -> list[Candidate]:
        """Not yet measured, in no particular order."""
        return list(self._left)

    def efficiency(self, precision: str) -> float | None:
        """Median measured FPS / ceiling of ``precision`` (FP32's when it has none yet)."""
        got = self._ratios.get(precision) or self._ratios.get("fp32")
        return statistics.median(got) if got else None

    def predicted(self, cand: Candidate) -> float | None:
        eff = self.efficiency(cand.config.precision)
        if eff is None or cand.ceiling is None:
            return None
        return eff * cand.ceiling

    def measured(self, cand: Candidate, fps: float) -> None:
        """Record ``cand``'s measured FPS (a resumed row counts like a new one)."""
        self._left = [c for c in self._left if c.config != cand.config]
        if cand.ceiling:
            self._ratios.setdefault(cand.config.precision, []).append(fps / cand.ceiling)

    def next(self) -> Candidate | None:
        """The configuration to measure next (None: all measured)."""
        if not self._left:
            return None
        if not self._ratios:
            return min(self._left, key=_probe_cost)
        scored = [(c, self.predicted(c)) for c in self._left]
        may = [c for c, p in scored if p is None or p >= MARGIN * self.target_fps]
        if may:
            return min(may, key=promise)
        near = [(c, p) for c, p in scored if p is not None and p >= FAR * self.target_fps]
        if near:
            return max(near, key=lambda cp: cp[1] or 0.0)[0]
        # out of reach: the pick will be the fastest within the accuracy bound, so measure
        # the likely most accurate first (the probe already gave a fast one)
        return min(self._left, key=promise)


def _probe_cost(c: Candidate) -> tuple[bool, int, bool, int]:
    """Cheapest to measure first: FP32 (INT8 needs a calibration), fewest pixels, native DCN,
    most threads (the configurations deployed most often)."""
    cfg = c.config
    return (cfg.precision != "fp32", cfg.height * cfg.width, cfg.dcn != "native",
            -(cfg.threads or 0))
