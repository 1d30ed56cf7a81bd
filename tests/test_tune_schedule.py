"""tune's measuring order (issue 33): a 4-minute budget finds a configuration near the target,
and when nothing reaches it the pick stays within the accuracy bound. Fake clock and fake
measurements: the checks are about which configurations get measured, not this CPU's speed."""

from __future__ import annotations

import itertools

import pytest

from edgeseg.tune.prune import Candidate, promise
from edgeseg.tune.schedule import Schedule
from edgeseg.tune.space import TuneConfig
from edgeseg.tune.tune import _cost_of_target, _pick_message, pick_config

SIZES = [(512, 1024), (448, 896), (384, 768), (320, 640), (256, 512), (192, 384), (128, 256)]
MEASURE_S = 40.0  # a measurement (export, calibration, timing) of the fake clock
BUDGET_S = 240.0


def space() -> list[Candidate]:
    """Sizes x fp32/int8 x native/portable x 1, 2 threads, with compute-roof ceilings of a
    48.8-GFLOP model at 512x1024 on a 100 GFLOP/s-per-thread CPU (int8: 4x the peak)."""
    out = []
    for (h, w), prec, dcn, t in itertools.product(SIZES, ("fp32", "int8"), ("native", "portable"),
                                                  (1, 2)):
        gflops = 48.8 * h * w / (512 * 1024)
        peak = 100.0 * t * (4 if prec == "int8" else 1)
        out.append(Candidate(TuneConfig("onnxruntime", prec, h, w, dcn, t),
                             {"fps_ceiling": peak / gflops}))
    return out


def true_fps(c: TuneConfig) -> float:
    """What the fake machine measures, like a 2-core AVX2 CPU: 75% of the fp32 roof (2.6 FPS at
    512x1024 on 2 threads), INT8 1.5x FP32 (28% of its 4x roof), two threads 1.7x one, the
    portable DCN 10% slower."""
    gflops = 48.8 * c.height * c.width / (512 * 1024)
    eff = 0.75 if c.precision == "fp32" else 0.75 * 1.5
    fps = 100.0 * eff / gflops * (1.7 if c.threads == 2 else 1.0)
    return fps * (0.9 if c.dcn == "portable" else 1.0)


def agreement(c: TuneConfig) -> float:
    """Smaller sizes and int8 agree less with the full-size FP32 reference."""
    a = 1.0 - 0.05 * SIZES.index(c.hw) - (0.01 if c.precision == "int8" else 0.0)
    return a - (0.002 if c.dcn == "portable" else 0.0)


def run(order, target: float) -> list[dict]:
    """Measure in ``order(candidates, target)`` while the fake clock allows (one always)."""
    clock, rows = 0.0, []
    for cand in order(space(), target):
        if rows and clock >= BUDGET_S:
            break
        c = cand.config
        rows.append({"label": c.label, "config": c.to_dict(), "fps": true_fps(c),
                     "agreement": agreement(c), "fps_ceiling": cand.ceiling})
        clock += MEASURE_S
        order.feed(cand, rows[-1]["fps"]) if hasattr(order, "feed") else None
    return rows


class Scheduled:
    def __call__(self, cands, target):
        self.s = Schedule(cands, target)
        while (c := self.s.next()) is not None:
            yield c

    def feed(self, cand, fps):
        self.s.measured(cand, fps)


def ladder(cands, target):  # the old order: largest first
    return iter(sorted(cands, key=promise))


def test_a_target_only_small_sizes_reach_is_found_within_the_budget() -> None:
    target = 15.0  # reached at 256x512 (int8 native 2t: 15.7 FPS) and smaller, not above
    reach = {c.config.label for c in space() if true_fps(c.config) >= target}
    assert reach and all(c.config.height <= 256 for c in space() if c.config.label in reach)
    old = run(ladder, target)
    assert len(old) == 6 and not any(r["fps"] >= target for r in old)  # spent on 512x1024
    rows = run(Scheduled(), target)
    assert len(rows) == 6
    pick, met = pick_config(rows, target, None, 0.68)  # a bound the 128x256 rows meet
    assert met, [r["label"] for r in rows]
    # the pick is the most accurate that reaches the target: 256x512 int8 at 2 threads
    assert rows[pick]["label"] == "int8 256x512 native 2t" and rows[pick]["fps"] >= target
    assert rows[0]["config"]["precision"] == "fp32"  # the probe needs no calibration
    assert rows[0]["config"]["height"] == 128


def test_an_unreachable_target_picks_within_the_accuracy_bound() -> None:
    rows = run(Scheduled(), 1e4)
    pick, met = pick_config(rows, 1e4, None, 0.9)
    assert not met
    assert rows[pick]["agreement"] >= 0.9  # never one far outside the bound
    within = [r for r in rows if r["agreement"] >= 0.9]
    assert rows[pick]["fps"] == max(r["fps"] for r in within)
    # what the target would cost, said in the message, when a measured row reaches it
    rows2 = rows + [{"label": "fp32 128x256 native 2t", "fps": 2e4, "agreement": 0.7}]
    pick2, met2 = pick_config(rows2, 1e4, None, 0.9)
    msg = _pick_message(rows2[pick2], met2, 1e4, None, 0.9, False, BUDGET_S, 6, 0,
                        _cost_of_target(rows2, 1e4))
    assert "picked the fastest within the accuracy bound" in msg
    assert "would cost agreement 0.7000 (fp32 128x256 native 2t" in msg


def test_no_row_within_the_bound_picks_the_most_accurate() -> None:
    rows = [{"fps": 10.0, "agreement": 0.5}, {"fps": 2.0, "agreement": 0.8}]
    assert pick_config(rows, 50.0, None, 0.9) == (1, False)


def test_efficiency_and_prediction_follow_measurements() -> None:
    cands = space()
    s = Schedule(cands, 15.0)
    first = s.next()
    assert first is not None and s.predicted(first) is None  # nothing measured yet
    s.measured(first, true_fps(first.config))
    assert s.efficiency("fp32") == pytest.approx(true_fps(first.config) / first.ceiling)
    assert s.efficiency("int8") == s.efficiency("fp32")  # FP32's until INT8 is measured
    assert len(s.left) == len(cands) - 1
