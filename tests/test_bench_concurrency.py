"""measure_concurrency against clients with a known service time (no server, no model).

The checks are what the numbers mean, not how fast this machine is: throughput x mean latency
equals the number of clients (Little's law, within the scheduling noise of sleeping threads),
and a request cap that the warm-up alone would exceed still leaves a measured window.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edgeseg.bench.concurrency import measure_concurrency
from edgeseg.errors import EdgesegError

FRAMES = [np.zeros((2, 2, 3), np.uint8)]


def sleeper(service_s: float, made_in: list[str] | None = None):
    """A client whose every request takes `service_s` (sleep releases the GIL, like socket I/O)."""

    def make_call():
        owner = threading.current_thread().name
        if made_in is not None:
            made_in.append(owner)

        def call(frame: np.ndarray) -> np.ndarray:
            # tritonclient.http refuses a client used from another thread than its maker's
            assert threading.current_thread().name == owner, "client used off its thread"
            time.sleep(service_s)
            return frame[..., 0]

        return call

    return make_call


def little(row: dict) -> float:
    """throughput x mean latency / concurrency: 1.0 when the row is self-consistent."""
    return row["throughput_fps"] * row["latency_ms"]["mean"] / 1e3 / row["concurrency"]


# Service times of 50-100 ms: on a CPU shared with other jobs a woken thread can wait several
# ms for a core between two requests (outside its measured latency), which a 5-10 ms service
# time turned into Little's-law ratios of 0.6 (seen under a 2-process load on 2 cores).


def test_known_service_time_gives_consistent_throughput():
    made_in: list[str] = []
    (row,) = measure_concurrency(sleeper(0.1, made_in), FRAMES, [3], duration_s=1.0,
                                 warmup_s=0.1)
    assert row["requests"] > 0
    assert row["latency_ms"]["p50"] >= 100.0  # a request never returns before its service time
    assert 0.75 <= little(row) <= 1.05, row
    assert row["throughput_fps"] == pytest.approx(row["requests"] / row["window_s"])
    assert row["window_s"] == pytest.approx(1.0)
    assert len(made_in) == 3 and "MainThread" not in made_in  # one client per worker thread


def test_cap_that_the_warm_up_alone_exceeds_still_measures():
    # 4 clients at 50 ms each send ~80 requests in the 1 s warm-up: the cap of 40 must count
    # window requests only, and the window closes at the 40th, not at the nominal 5 s.
    (row,) = measure_concurrency(sleeper(0.05), FRAMES, [4], duration_s=5.0, warmup_s=1.0,
                                 max_requests=40)
    assert row["requests"] == 40
    assert 0.0 < row["window_s"] < 5.0
    assert row["throughput_fps"] == pytest.approx(40 / row["window_s"])
    # the (at most 4) requests in flight when the window opens count whole: up to 4/40 above 1
    assert 0.7 <= little(row) <= 1.05 + 4 / 40, row


def test_a_client_that_cannot_be_built_is_one_error():
    def make_call():
        raise ConnectionRefusedError("server down")

    with pytest.raises(EdgesegError, match="a client failed: server down"):
        measure_concurrency(make_call, FRAMES, [2], duration_s=0.2, warmup_s=0.0)
