"""The source-independent power machinery: :class:`PowerResult`, :func:`integrate_power` and
the :class:`PowerSampler` base class (a background sampling thread over a ``with`` block).

Concrete sources are in :mod:`edgeseg.bench.power_sensors`; choosing one is
:func:`edgeseg.bench.power.auto_sampler`.
"""

from __future__ import annotations

import itertools
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from edgeseg.errors import EdgesegError

__all__ = ["NullSampler", "PowerResult", "PowerSampler", "integrate_power"]

_S = TypeVar("_S", bound="PowerSampler")


@dataclass
class PowerResult:
    """Power over one window. ``available=False`` carries ``reason`` and no numbers.

    ``samples`` are ``(t_s, watts)`` with ``t_s`` seconds since the window opened. ``rails_w``
    holds per-rail averages where the source has rails (tegrastats, jtop). ``meta`` stamps the
    conditions (nvpmodel mode, jetson_clocks, NVML method, RAPL domains).
    """

    available: bool
    source: str
    reason: str | None = None
    avg_w: float | None = None
    energy_j: float | None = None
    duration_s: float | None = None
    samples: list[tuple[float, float]] = field(default_factory=list)
    rails_w: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def unavailable(cls, source: str, reason: str) -> PowerResult:
        return cls(available=False, source=source, reason=reason)

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "available": self.available,
            "source": self.source,
            "reason": self.reason,
            "avg_w": self.avg_w,
            "energy_j": self.energy_j,
            "duration_s": self.duration_s,
            "n_samples": len(self.samples),
            "rails_w": dict(self.rails_w),
            "meta": dict(self.meta),
        }
        if samples:
            d["samples"] = [list(s) for s in self.samples]
        return d


def integrate_power(samples: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    """``(energy_j, avg_w, duration_s)`` of ``(t_s, watts)`` samples by the trapezoidal rule.

    One sample (or samples at one instant) gives that power and zero duration/energy.
    """
    if not samples:
        raise EdgesegError("no power samples to integrate")
    pts = sorted(samples)
    duration = pts[-1][0] - pts[0][0]
    if duration <= 0:
        avg = sum(w for _, w in pts) / len(pts)
        return 0.0, avg, 0.0
    energy = 0.0
    for (t0, w0), (t1, w1) in itertools.pairwise(pts):
        energy += 0.5 * (w0 + w1) * (t1 - t0)
    return energy, energy / duration, duration


class PowerSampler(ABC):
    """Samples power on a background thread over a ``with`` block.

    Subclasses implement :meth:`probe` (None, or why the source cannot be used here),
    :meth:`_open`/:meth:`_close` and :meth:`_read`. A source with an energy counter sets
    ``counter = True`` and returns cumulative joules from ``_read``; otherwise ``_read``
    returns watts. ``_read`` may also return ``(value, {rail: watts})``.

    Entering an unavailable sampler is not an error: the block runs unmeasured and
    :attr:`result` says why.
    """

    name = "?"
    counter = False

    def __init__(self, interval_s: float = 0.1) -> None:
        if interval_s <= 0:
            raise EdgesegError(f"sampling interval must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self.result: PowerResult | None = None
        self.skipped: dict[str, str] = {}  # sources auto_sampler passed over, with reasons
        self._raw: list[tuple[float, float]] = []
        self._rails: list[dict[str, float]] = []
        self._meta: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._reason: str | None = None
        self._error: str | None = None

    # -- to implement ------------------------------------------------------------------------
    @abstractmethod
    def probe(self) -> str | None:
        """None when this source works here, else a one-line reason."""

    def _open(self) -> None:
        """Acquire the source (connection, handle, process)."""

    def _close(self) -> None:
        """Release what :meth:`_open` acquired."""

    @abstractmethod
    def _read(self) -> float | tuple[float, dict[str, float]]:
        """One reading: watts, or cumulative joules when ``counter`` is True."""

    # -- machinery ---------------------------------------------------------------------------
    def available(self) -> bool:
        self._reason = self.probe()
        return self._reason is None

    def _sample(self) -> None:
        value = self._read()
        rails: dict[str, float] = {}
        if isinstance(value, tuple):
            value, rails = value
        t = time.perf_counter() - self._t0
        with self._lock:
            self._raw.append((t, float(value)))
            if rails:
                self._rails.append(rails)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._sample()
            except Exception as e:  # noqa: BLE001 - a sensor hiccup must not kill the run
                self._error = f"{type(e).__name__}: {e}"

    def __enter__(self: _S) -> _S:  # noqa: PYI019 - typing.Self needs Python 3.11
        self.result = None
        self._raw, self._rails, self._meta, self._error = [], [], {}, None
        reason = self.probe()
        if reason is None:
            try:
                self._open()
            except Exception as e:  # noqa: BLE001 - reported, not raised
                reason = f"{self.name} failed to start: {type(e).__name__}: {e}"
        self._reason = reason
        if reason is not None:
            return self
        self._stop.clear()
        self._t0 = time.perf_counter()
        self._start_sampling()
        return self

    def _start_sampling(self) -> None:
        try:
            self._sample()
        except Exception as e:  # noqa: BLE001
            self._error = f"{type(e).__name__}: {e}"
        self._thread = threading.Thread(target=self._loop, name=f"power-{self.name}", daemon=True)
        self._thread.start()

    def _stop_sampling(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, 2 * self.interval_s))
            self._thread = None
        try:
            self._sample()
        except Exception as e:  # noqa: BLE001
            self._error = f"{type(e).__name__}: {e}"

    def __exit__(self, *exc: object) -> None:
        if self._reason is not None:
            self.result = PowerResult.unavailable(self.name, self._reason)
            return
        duration = time.perf_counter() - self._t0
        try:
            self._stop_sampling()
        finally:
            self._close()
        self.result = self._summarise(duration)

    def latest(self) -> dict[str, Any]:
        """The newest reading while sampling (a live view such as the web page):
        ``{"available": True, "source", "watts"}``, or ``{"available": False, "reason"}``.
        A counter source gives the mean power of its last interval."""
        if self._reason is not None:
            return {"available": False, "reason": self._reason}
        with self._lock:
            raw = list(self._raw[-2:])
        if not raw:
            return {"available": False, "reason": f"{self.name}: no reading yet"}
        if self.counter:
            if len(raw) < 2 or raw[1][0] <= raw[0][0]:
                return {"available": False, "reason": f"{self.name}: one reading so far"}
            watts = (raw[1][1] - raw[0][1]) / (raw[1][0] - raw[0][0])
        else:
            watts = raw[-1][1]
        return {"available": True, "source": self.name, "watts": float(watts)}

    def _summarise(self, window_s: float) -> PowerResult:
        with self._lock:
            raw = list(self._raw)
            rail_rows = list(self._rails)
        meta = dict(self._meta)
        if self._error:
            meta["last_error"] = self._error
        if self.counter:
            if len(raw) < 2:
                return PowerResult.unavailable(self.name, self._error or "fewer than 2 readings")
            energy = raw[-1][1] - raw[0][1]
            duration = raw[-1][0] - raw[0][0]
            samples = [
                (t1, (e1 - e0) / (t1 - t0))
                for (t0, e0), (t1, e1) in itertools.pairwise(raw)
                if t1 > t0
            ]
            avg = energy / duration if duration > 0 else None
        else:
            if not raw:
                reason = self._error or f"no readings within the {window_s:.2f} s window"
                return PowerResult.unavailable(self.name, reason)
            samples = raw
            energy, avg, duration = integrate_power(raw)
            if duration <= 0:  # a single reading: hold it over the window
                duration, energy = window_s, avg * window_s
        rails_w: dict[str, float] = {}
        if rail_rows:
            for k in rail_rows[0]:
                vals = [r[k] for r in rail_rows if k in r]
                rails_w[k] = sum(vals) / len(vals)
        return PowerResult(
            available=True,
            source=self.name,
            avg_w=avg,
            energy_j=energy,
            duration_s=duration,
            samples=samples,
            rails_w=rails_w,
            meta=meta,
        )


class NullSampler(PowerSampler):
    """Stands in when no source is available; its result carries the combined reasons."""

    name = "none"

    def __init__(self, reason: str) -> None:
        super().__init__()
        self._why = reason

    def probe(self) -> str | None:
        return self._why

    def _read(self) -> float:  # pragma: no cover - never entered
        raise RuntimeError(self._why)
