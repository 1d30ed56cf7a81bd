"""The live loop: source -> preprocess -> infer -> postprocess -> render -> sink.

Three threads overlap the work: the source reads (and, for files, pre-processes) ahead, the
calling thread runs the network, post-processing and drawing, and video/folder sinks encode on
a writer thread. Ctrl-C (KeyboardInterrupt) ends the loop, finalises the output and returns the
summary of what was done.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np

from edgeseg.runtime.base import Segmenter
from edgeseg.video.overlay import Renderer
from edgeseg.video.reader import FrameSource
from edgeseg.video.sinks import Sink, SinkSpec, TeeSink, open_sink
from edgeseg.video.sources import SourceSpec

__all__ = ["RunSummary", "run_pipeline"]

_RECENT = 120  # latencies behind the running p50 / p99 a sink's on_stats gets
_STATS_PERIOD_S = 0.5
STAGES = ("read", "preprocess", "infer", "postprocess", "render", "sink")


class _Reservoir:
    """Per-frame latencies in bounded memory: all of them up to ``size``, then a uniform
    random sample of ``size`` (reservoir sampling), so percentiles stay unbiased on runs of
    any length."""

    def __init__(self, size: int = 10_000, seed: int = 0) -> None:
        self.values = np.empty(size, np.float64)
        self.n = 0
        self._rng = np.random.default_rng(seed)

    def add(self, x: float) -> None:
        if self.n < self.values.size:
            self.values[self.n] = x
        else:
            j = int(self._rng.integers(0, self.n + 1))
            if j < self.values.size:
                self.values[j] = x
        self.n += 1

    def summary(self) -> dict[str, float]:
        v = self.values[: min(self.n, self.values.size)]
        if v.size == 0:
            return {"p50": 0.0, "p99": 0.0, "mean": 0.0}
        p50, p99 = np.percentile(v, [50, 99])
        return {"p50": float(p50), "p99": float(p99), "mean": float(v.mean())}


@dataclass
class RunSummary:
    """What a run did.

    ``fps`` is frames / wall time from the first frame taken to the last one handed to the
    sink. ``latency_ms`` (p50, p99, mean) is per frame, from taking it off the source to the
    sink accepting it (encoding overlaps on the writer thread and is not in it); runs longer
    than 10,000 frames use a uniform sample of 10,000, so memory stays flat.
    ``stages_ms`` are mean milliseconds per stage (``read`` and, for files, ``preprocess``
    run on the reader thread). ``stop_reason``: end, max-frames, quit (q/Esc in the window),
    interrupted (Ctrl-C), source-lost.
    """

    frames: int
    dropped: int
    skipped: int
    fps: float
    latency_ms: dict[str, float]
    source: str
    sink: str
    stop_reason: str = "end"
    elapsed_s: float = 0.0
    stages_ms: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_info(segmenter: Segmenter) -> dict[str, Any]:
    """What a live page shows about the model."""
    m = segmenter.meta
    return {"variant": m.variant, "backend": segmenter.backend, "precision": m.precision,
            "input_hw": list(m.input_hw)}


def _open_source(source: str | SourceSpec | FrameSource, segmenter: Segmenter,
                 warn: Callable[[str], Any] | None) -> FrameSource:
    if not isinstance(source, FrameSource):
        return FrameSource(source, prepare=segmenter.preprocess, warn=warn).open()
    if source.prepare is None:
        source.prepare = segmenter.preprocess  # used only if reading has not started
    return source.open()


def run_pipeline(
    segmenter: Segmenter,
    source: str | SourceSpec | FrameSource,
    sink: str | SinkSpec | Sink | Sequence[str | SinkSpec | Sink] = "none",
    visualize: str = "overlay",
    alpha: float = 0.5,
    max_frames: int | None = None,
    progress: Callable[..., Any] | None = None,
    *,
    legend: bool = True,
    hud: bool = True,
    masks: Sequence[str] = ("color",),
    warn: Callable[[str], Any] | None = None,
    sink_options: dict[str, Any] | None = None,
) -> RunSummary:
    """Segment every frame of ``source`` and hand the result to ``sink``.

    Args:
        segmenter: any backend (:func:`edgeseg.runtime.open_segmenter`).
        source: a ``--source`` spec (see :func:`edgeseg.video.sources.parse_source`) or an
            opened/unopened :class:`FrameSource`.
        sink: a ``--sink`` spec (display, none, out.mp4, a folder, http://...) or a
            :class:`Sink`, or a list of them (each frame goes to all).
        visualize: overlay, mask or side-by-side (the picture a window or video shows).
        alpha: mask weight in the overlay.
        max_frames: stop after this many frames.
        progress: called as ``progress(1, info=...)`` after each frame.
        legend, hud: draw the classes present / FPS and latency on the picture.
        masks: what a folder sink writes: color, labelids, trainids, vis.
        warn: receives one-line warnings (skipped frames, reconnects) as they happen.
        sink_options: passed to registered sink kinds (e.g. the web sink's token).

    A sink with an ``on_stats(dict)`` method gets the running numbers about twice a second
    and the final ones (with ``summary``) before it is closed.

    Returns the :class:`RunSummary`; the source is closed and the sink finalised in every case.
    """
    meta = segmenter.meta
    src = _open_source(source, segmenter, warn)
    stage_ms = {s: 0.0 for s in STAGES}
    latencies = _Reservoir()
    last_ms: float | None = None
    reason = "end"
    t_first = t_last = 0.0
    ema_dt: float | None = None
    specs = list(sink) if isinstance(sink, (list, tuple)) else [sink]
    opened: list[Sink] = []
    snk: Sink | None = None
    recent: deque[float] = deque(maxlen=_RECENT)
    hook: Callable[[dict[str, Any]], Any] | None = None
    next_stats = 0.0
    failed = False

    def stats() -> dict[str, Any]:
        p50, p99 = np.percentile(np.fromiter(recent, np.float64), [50, 99]) if recent else (0, 0)
        return {"frames": latencies.n, "fps": 1.0 / ema_dt if ema_dt else 0.0,
                "latency_ms": {"p50": float(p50), "p99": float(p99)},
                "dropped": src.dropped, "skipped": src.skipped}

    def summarise() -> RunSummary:
        n = latencies.n
        elapsed = t_last - t_first if n else 0.0
        return RunSummary(
            frames=n,
            dropped=src.dropped,
            skipped=src.skipped,
            fps=n / elapsed if elapsed > 0 else 0.0,
            latency_ms=latencies.summary(),
            source=src.name,
            sink=snk.name if snk is not None else str(sink),
            stop_reason=reason,
            elapsed_s=elapsed,
            stages_ms={k: v / n for k, v in stage_ms.items()} if n else dict(stage_ms),
            warnings=list(src.warnings),
        )

    try:
        renderer = Renderer(meta.classes, meta.palette, visualize, alpha, legend=legend, hud=hud)
        for spec in specs:
            opened.append(spec if isinstance(spec, Sink) else open_sink(
                cast("str | SinkSpec", spec), classes=meta.classes, palette=meta.palette,
                fps=src.fps, masks=masks, **(sink_options or {})))
        snk = opened[0] if len(opened) == 1 else TeeSink(opened)
        hook = getattr(snk, "on_stats", None)
        if hook is not None:
            hook({"model": model_info(segmenter)})
        for frame in src:
            t0 = time.perf_counter()
            if latencies.n == 0:
                t_first = t0
            img = frame.image
            batch = frame.batch if frame.batch is not None else segmenter.preprocess(img)
            t1 = time.perf_counter()
            out = segmenter.infer(batch)
            t2 = time.perf_counter()
            labels = segmenter.postprocess(out, img.shape[:2])
            t3 = time.perf_counter()
            vis = None
            if snk.needs_visual:
                fps_now = 1.0 / ema_dt if ema_dt else None
                vis = renderer(img, labels, fps=fps_now, latency_ms=last_ms)
            t4 = time.perf_counter()
            keep = snk.write(frame, labels, vis)
            t5 = time.perf_counter()
            if latencies.n:  # smoothed frame interval for the HUD
                dt = t5 - t_last
                ema_dt = dt if ema_dt is None else 0.9 * ema_dt + 0.1 * dt
            t_last = t5
            last_ms = (t5 - t0) * 1e3
            latencies.add(last_ms)
            recent.append(last_ms)
            if hook is not None and t5 >= next_stats:
                next_stats = t5 + _STATS_PERIOD_S
                hook(stats())
            for name, ms in zip(STAGES, (frame.read_ms, frame.prep_ms + (t1 - t0) * 1e3,
                                         (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t4 - t3) * 1e3,
                                         (t5 - t4) * 1e3)):
                stage_ms[name] += ms
            if progress is not None:
                progress(1, info=f"{1.0 / ema_dt:.1f} FPS" if ema_dt else "")
            if not keep:
                reason = "quit"
                break
            if max_frames is not None and latencies.n >= max_frames:
                reason = "max-frames"
                break
        else:
            reason = "source-lost" if src.stop_reason == "source-lost" else "end"
    except KeyboardInterrupt:
        reason = "interrupted"
    except BaseException:
        failed = True
        raise
    finally:
        try:
            src.close()  # stop reading first, then let the sink drain and finalise
        finally:
            try:
                if hook is not None and not failed:
                    hook({**stats(), "summary": summarise().to_dict()})
            finally:
                if snk is not None and failed:  # after an error, no half-written output
                    snk.abort()
                elif snk is not None:
                    snk.close()
                else:  # an opener failed: drop those already open
                    for o in opened:
                        o.abort()
    return summarise()
