"""Several sources at once: frames from N cameras batched into one inference call per tick.

Each source keeps its own reader thread (and reconnects on its own, see
:class:`~edgeseg.video.reader.Reconnect`); a pump thread per source moves its frames into a
slot the tick loop polls without blocking, so a source that is reconnecting simply contributes
nothing to the ticks until it is back, and never stalls the others. Live slots keep only the
newest frame (older ones are counted as dropped); file slots hold two, so nothing is lost.

Each tick stacks the ready frames into one ``(N, 3, h, w)`` batch (torch, dynamic-batch ONNX,
engines built for it); a model with a fixed batch of 1 falls back to one call per frame, once,
with a warning. Per-source sinks get their source's frames; shared sinks (a web page, one
video) get a mosaic of the latest picture of every source, plus per-source stats through
``on_stats``.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.runtime.base import Segmenter
from edgeseg.video.overlay import Renderer
from edgeseg.video.reader import Frame, FrameSource
from edgeseg.video.sinks import Sink

__all__ = ["MultiSummary", "StreamStats", "expand_sources", "mosaic", "read_streams_file",
           "run_multi"]

STATS_PERIOD_S = 0.5
_FILE_DEPTH = 2
_LAT_KEEP = 10_000  # latencies kept per source: memory stays flat on runs of any length


def read_streams_file(path: str | Path) -> list[str]:
    """A ``.streams`` file: one source per line; blank lines and lines starting with ``#`` are
    ignored (no inline comments: a URL may hold a ``#``)."""
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except OSError as e:
        raise EdgesegError(f"--source {p}: cannot read the .streams file ({e.strerror})") from None
    out = [s for ln in lines if (s := ln.strip()) and not s.startswith("#")]
    if not out:
        raise EdgesegError(f"--source {p}: the .streams file lists no source")
    return out


def expand_sources(specs: Sequence[str]) -> list[str]:
    """``--source`` values with every ``*.streams`` file replaced by its lines."""
    out: list[str] = []
    for s in specs:
        out += read_streams_file(s) if s.lower().endswith(".streams") else [s]
    if not out:
        raise EdgesegError("give at least one --source")
    return out


def mosaic(images: Sequence[np.ndarray | None], cols: int | None = None) -> np.ndarray:
    """Tile pictures (BGR or label maps) on a grid at the first one's size; a missing picture
    is a black (or zero) tile."""
    import cv2

    first = next((im for im in images if im is not None), None)
    if first is None:
        raise ValueError("mosaic of no picture")
    n = len(images)
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    h, w = first.shape[:2]
    interp = cv2.INTER_NEAREST if first.ndim == 2 else cv2.INTER_AREA
    out = np.zeros((rows * h, cols * w, *first.shape[2:]), first.dtype)
    for i, im in enumerate(images):
        if im is None:
            continue
        if im.shape[:2] != (h, w):
            im = cv2.resize(im, (w, h), interpolation=interp)
        r, c = divmod(i, cols)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = im
    return out


class _Slot:
    """One source's pump thread and the frames waiting for the next tick."""

    def __init__(self, src: FrameSource, cond: threading.Condition, limit: int | None) -> None:
        self.src, self.cond, self.limit = src, cond, limit
        self.live = src.spec.live
        self.items: collections.deque[Frame] = collections.deque()
        self.replaced = 0  # live frames superseded before a tick took them
        self.done = False
        self.error: BaseException | None = None
        self.taken = 0
        self.t_first = self.t_last = 0.0
        self.lat: collections.deque[float] = collections.deque(maxlen=_LAT_KEEP)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._pump, name=f"edgeseg-pump-{src.name}",
                                       daemon=True)

    def _pump(self) -> None:
        try:
            for frame in self.src:
                with self.cond:
                    if self.live:
                        if self.items:
                            self.items.popleft()
                            self.replaced += 1
                    else:
                        while len(self.items) >= _FILE_DEPTH and not self.stop.is_set():
                            self.cond.wait(0.1)
                    if self.stop.is_set():
                        break
                    self.items.append(frame)
                    self.cond.notify_all()
        except BaseException as e:  # noqa: BLE001 - re-raised by the tick loop
            self.error = e
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    @property
    def finished(self) -> bool:
        return (self.done and not self.items) or (self.limit is not None and self.taken >= self.limit)

    def take(self) -> Frame | None:
        if self.finished or not self.items:
            return None
        self.taken += 1
        return self.items.popleft()

    @property
    def state(self) -> str:
        if self.finished:
            return "lost" if self.src.stop_reason == "source-lost" else "ended"
        if self.live and self.t_last and time.perf_counter() - self.t_last > 1.0:
            return "waiting"  # reconnecting or just slow
        return "live"


@dataclass
class StreamStats:
    """One source of a multi-source run."""

    name: str
    frames: int
    fps: float
    dropped: int
    skipped: int
    latency_ms: dict[str, float]
    stop_reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MultiSummary:
    """What a multi-source run did: ``fps`` counts frames of all sources per second of wall
    time; ``ticks`` inference calls (batched) or ticks (sequential); ``batch_mean`` frames per
    call."""

    frames: int
    ticks: int
    fps: float
    batched: bool
    batch_mean: float
    latency_ms: dict[str, float]
    elapsed_s: float
    sources: list[StreamStats]
    sinks: list[str]
    stop_reason: str = "end"
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct(v: Sequence[float]) -> dict[str, float]:
    if not v:
        return {"p50": 0.0, "p99": 0.0, "mean": 0.0}
    a = np.asarray(v, np.float64)
    p50, p99 = np.percentile(a, [50, 99])
    return {"p50": float(p50), "p99": float(p99), "mean": float(a.mean())}


def _infer_batch(seg: Segmenter, frames: list[Frame], batched: bool,
                 warn: Callable[[str], Any]) -> tuple[list[np.ndarray], bool]:
    """Labels for each frame: one ``infer`` for all when ``batched`` (falls back for good to
    one call per frame when the model refuses a batch), else one call each."""
    inputs = [f.batch if f.batch is not None else seg.preprocess(f.image) for f in frames]
    outs: list[np.ndarray]
    if batched and len(frames) > 1:
        try:
            out = seg.infer(np.concatenate(inputs))
            outs = [out[i:i + 1] for i in range(len(frames))]
        except Exception as e:  # noqa: BLE001 - onnxruntime / TensorRT raise their own types
            warn(f"the model refused a batch of {len(frames)} ({type(e).__name__}); running one "
                 "frame per call (export with a dynamic batch dimension to batch streams)")
            batched = False
            outs = [seg.infer(x) for x in inputs]
    else:
        outs = [seg.infer(x) for x in inputs]
    labels = [seg.postprocess(o, f.image.shape[:2]) for o, f in zip(outs, frames)]
    return labels, batched


def run_multi(
    segmenter: Segmenter,
    sources: Sequence[FrameSource],
    *,
    per_source: Sequence[Sink | None] = (),
    shared: Sequence[Sink] = (),
    batched: bool = True,
    visualize: str = "overlay",
    alpha: float = 0.5,
    max_frames: int | None = None,
    legend: bool = True,
    hud: bool = True,
    warn: Callable[[str], Any] | None = None,
    progress: Callable[..., Any] | None = None,
) -> MultiSummary:
    """Run ``segmenter`` over several sources, batching the frames ready at each tick.

    Args:
        sources: opened or unopened sources; all are closed at the end.
        per_source: a sink per source (``None`` for none), receiving that source's frames.
        shared: sinks receiving a mosaic of every source's latest picture once per tick.
        batched: one inference call per tick (False: one per frame, the baseline).
        max_frames: stop each source after this many frames.
    """
    warnings: list[str] = []

    def _warn(msg: str) -> None:
        warnings.append(msg)
        if warn is not None:
            warn(msg)

    if not sources:
        raise EdgesegError("give at least one --source")
    per = list(per_source) + [None] * (len(sources) - len(per_source))
    meta = segmenter.meta
    cond = threading.Condition()
    slots = [_Slot(s, cond, max_frames) for s in sources]
    names = [s.name for s in sources]
    latest_vis: list[np.ndarray | None] = [None] * len(slots)
    latest_lab: list[np.ndarray | None] = [None] * len(slots)
    all_lat: collections.deque[float] = collections.deque(maxlen=_LAT_KEEP)
    recent: collections.deque[float] = collections.deque(maxlen=200)
    ticks = frames_done = 0
    reason = "end"
    t_start = t_end = 0.0
    next_stats = 0.0
    renderer = Renderer(meta.classes, meta.palette, visualize, alpha, legend=legend, hud=hud)
    need_vis = any(s is not None and s.needs_visual for s in per) or any(s.needs_visual for s in shared)
    failed = False
    try:
        for s in sources:
            if s.prepare is None:
                s.prepare = segmenter.preprocess
            s.open()
        for sl in slots:
            sl.thread.start()
        while True:
            with cond:
                while not any(sl.items and not sl.finished for sl in slots) and not all(
                        sl.finished for sl in slots):
                    cond.wait(0.05)
                # file sources fill fast: give the others a moment so the batch is full
                if any(not sl.live for sl in slots):
                    deadline = time.perf_counter() + 0.02
                    while (any(not sl.items and not sl.done and not sl.finished for sl in slots)
                           and time.perf_counter() < deadline):
                        cond.wait(0.005)
                taken = [(i, f) for i, sl in enumerate(slots) if (f := sl.take()) is not None]
                cond.notify_all()
            for sl in slots:
                if sl.error is not None:
                    err, sl.error = sl.error, None
                    raise err
            if not taken:
                if all(sl.finished for sl in slots):
                    break
                continue
            t0 = time.perf_counter()
            if not t_start:
                t_start = t0
            frames = [f for _, f in taken]
            labels, batched = _infer_batch(segmenter, frames, batched, _warn)
            ticks += 1 if batched else len(frames)
            for (i, f), lab in zip(taken, labels):
                sl = slots[i]
                vis = renderer(f.image, lab) if need_vis else None
                latest_vis[i], latest_lab[i] = vis, lab
                snk = per[i]
                if snk is not None and not snk.write(f, lab, vis):
                    reason = "quit"
                t = time.perf_counter()
                if not sl.t_first:
                    sl.t_first = t0
                sl.t_last = t
                sl.lat.append((t - t0) * 1e3 + f.read_ms)
                all_lat.append((t - t0) * 1e3)
                recent.append((t - t0) * 1e3)
                frames_done += 1
            if shared:
                vis_m = mosaic(latest_vis) if need_vis else None
                lab_m = mosaic(latest_lab)
                tick_frame = Frame(ticks, vis_m if vis_m is not None else lab_m, f"{ticks:06d}")
                for snk in shared:
                    if not snk.write(tick_frame, lab_m, vis_m):
                        reason = "quit"
            t_end = time.perf_counter()
            if progress is not None:
                progress(len(taken))
            if t_end >= next_stats:
                next_stats = t_end + STATS_PERIOD_S
                stats = _live_stats(slots, names, recent, frames_done, t_start, t_end)
                for snk in [*shared, *(s for s in per if s is not None)]:
                    if hasattr(snk, "on_stats"):
                        snk.on_stats(stats)
            if reason == "quit":
                break
            if all(sl.finished for sl in slots):
                break
        if reason == "end" and max_frames is not None and all(sl.taken >= max_frames for sl in slots):
            reason = "max-frames"
        elif reason == "end" and all(sl.src.stop_reason == "source-lost" for sl in slots):
            reason = "source-lost"
    except KeyboardInterrupt:
        reason = "interrupted"
    except BaseException:
        failed = True
        raise
    finally:
        for sl in slots:
            sl.stop.set()
        for s in sources:
            s.close()
        for sl in slots:
            if sl.thread.is_alive():
                sl.thread.join(5)
        elapsed = t_end - t_start if frames_done else 0.0
        summary = MultiSummary(
            frames=frames_done, ticks=ticks, fps=frames_done / elapsed if elapsed > 0 else 0.0,
            batched=batched, batch_mean=frames_done / ticks if ticks else 0.0,
            latency_ms=_pct(all_lat), elapsed_s=elapsed,
            sources=[_stream_stats(sl) for sl in slots],
            sinks=[s.name for s in [*shared, *(p for p in per if p is not None)]],
            stop_reason=reason, warnings=warnings + [w for s in sources for w in s.warnings])
        final = {**_live_stats(slots, names, recent, frames_done, t_start, t_end),
                 "summary": {k: v for k, v in summary.to_dict().items() if k != "sources"}}
        for snk in [*shared, *(p for p in per if p is not None)]:
            if failed:  # after an error, no half-written output
                snk.abort()
                continue
            try:
                if hasattr(snk, "on_stats"):
                    snk.on_stats(final)
            finally:
                snk.close()
    return summary


def _stream_stats(sl: _Slot) -> StreamStats:
    span = sl.t_last - sl.t_first
    return StreamStats(name=sl.src.name, frames=sl.taken,
                       fps=(sl.taken - 1) / span if sl.taken > 1 and span > 0 else 0.0,
                       dropped=sl.src.dropped + sl.replaced, skipped=sl.src.skipped,
                       latency_ms=_pct(sl.lat), stop_reason=sl.src.stop_reason)


def _live_stats(slots: Sequence[_Slot], names: Sequence[str], lat: Sequence[float], frames: int,
                t0: float, t1: float) -> dict[str, Any]:
    p = _pct(list(lat))
    return {
        "fps": frames / (t1 - t0) if t1 > t0 else 0.0,
        "latency_ms": {"p50": p["p50"], "p99": p["p99"]},
        "dropped": sum(sl.src.dropped + sl.replaced for sl in slots),
        "skipped": sum(sl.src.skipped for sl in slots),
        "sources": [{"name": n, "frames": sl.taken, "fps": _stream_stats(sl).fps,
                     "dropped": sl.src.dropped + sl.replaced, "state": sl.state}
                    for n, sl in zip(names, slots)],
    }
