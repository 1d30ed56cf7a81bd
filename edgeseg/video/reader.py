"""Reading a frame source on its own thread: :class:`FrameSource`, :class:`Frame`, :class:`Reconnect`.

:class:`FrameSource` opens a :class:`~edgeseg.video.sources.SourceSpec` and reads on a
background thread:

* live sources hand over the *latest* frame: when inference is slower than the camera the older
  frame is replaced and counted in ``dropped``, so latency stays one frame deep. A lost live
  source is reopened a bounded number of times with backoff (:class:`Reconnect`), then the run
  stops cleanly.
* files, folders and globs lose nothing: frames are read ahead into a small bounded queue so
  decoding (and pre-processing) overlaps inference.

An unreadable frame or image is skipped with a warning and counted in ``skipped``; a source
that cannot be opened raises :class:`EdgesegError` naming it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.video.frame import Frame
from edgeseg.video.sources import Capture, SourceSpec, list_images, open_capture, parse_source

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Frame", "FrameSource", "Reconnect"]

# Consecutive failed reads that end a file (FFmpeg already retries inside one read()).
_FILE_MAX_FAILS = 5
# Warnings kept on the source (a flaky camera must not grow memory over a days-long run).
_MAX_WARNINGS = 100


@dataclass(frozen=True)
class Reconnect:
    """How a lost live source is reopened: ``attempts`` tries, waiting ``backoff_s`` doubling
    up to ``max_backoff_s`` between them. The count restarts after every good frame."""

    attempts: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))


class _Handoff:
    """Bounded hand-over between the reader thread and the consumer.

    ``drop=True`` (live): a full slot is overwritten and the old item counted as dropped.
    ``drop=False`` (files): the reader waits for room, so nothing is lost.
    """

    def __init__(self, maxlen: int, drop: bool) -> None:
        self.maxlen, self.drop = maxlen, drop
        self.items: deque[Frame] = deque()
        self.cond = threading.Condition()
        self.closed = False
        self.dropped = 0

    def put(self, item: Frame, stop: threading.Event) -> None:
        with self.cond:
            while len(self.items) >= self.maxlen and not self.drop and not stop.is_set():
                self.cond.wait(0.1)
            if len(self.items) >= self.maxlen and self.drop:
                self.items.popleft()
                self.dropped += 1
            self.items.append(item)
            self.cond.notify_all()

    def get(self) -> Frame | None:
        """The next item, or None once the reader has finished and everything was taken."""
        with self.cond:
            while not self.items and not self.closed:
                self.cond.wait(0.1)  # short waits keep Ctrl-C responsive
            item = self.items.popleft() if self.items else None
            self.cond.notify_all()
            return item

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


def _valid(img: Any) -> np.ndarray | None:
    """A BGR uint8 (H, W, 3) frame, converting grey/BGRA; None for anything unusable."""
    if not isinstance(img, np.ndarray) or img.size == 0 or img.dtype != np.uint8:
        return None
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    import cv2

    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return None


class FrameSource:
    """Frames of one source, read on a background thread; iterate, then ``close()``.

    Args:
        source: a spec string or :class:`SourceSpec`.
        reconnect: policy for live sources that stop delivering frames.
        queue_size: read-ahead depth for files, folders and globs.
        prepare: ``bgr -> batch`` (``Segmenter.preprocess``) run on the reader thread for
            non-live sources, overlapping inference; live frames may be dropped, so not theirs.
        capture_factory: opens a spec (default :func:`open_capture`; tests pass fakes).
        sleep: waits between reconnect attempts (default: interruptible by ``close``).
        warn: receives each one-line warning; ``warnings`` keeps the latest 100.

    After iteration: ``frames``, ``dropped``, ``skipped``, ``stop_reason`` (end, source-lost,
    closed) and ``expected`` (frame count, where known).
    """

    def __init__(
        self,
        source: str | SourceSpec,
        *,
        reconnect: Reconnect = Reconnect(),
        queue_size: int = 4,
        prepare: Callable[[np.ndarray], np.ndarray] | None = None,
        capture_factory: Callable[[SourceSpec], Capture] = open_capture,
        sleep: Callable[[float], Any] | None = None,
        warn: Callable[[str], Any] | None = None,
    ) -> None:
        self.spec = source if isinstance(source, SourceSpec) else parse_source(source)
        self.reconnect = reconnect
        self.prepare = prepare
        self._factory = capture_factory
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._warn_cb = warn
        self.warnings: deque[str] = deque(maxlen=_MAX_WARNINGS)  # the latest; all go to warn
        self._handoff = _Handoff(1, drop=True) if self.spec.live else _Handoff(queue_size, drop=False)
        self._cap: Capture | None = None
        self._paths: list[Path] = []
        self._thread: threading.Thread | None = None
        self._opened = False
        self._error: BaseException | None = None
        self.frames = self.skipped = self._read = 0
        self.fps: float | None = None
        self.expected: int | None = None
        self.stop_reason = "end"

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def dropped(self) -> int:
        return self._handoff.dropped

    def open(self) -> FrameSource:
        """Open the device, stream or files now: errors raise here, in the caller's thread.

        Reading starts with iteration (:meth:`start`), so a model can load in between.
        """
        if self._opened:
            return self
        if self.spec.kind in ("image", "folder", "glob"):
            self._paths = list_images(self.spec)
            self.expected = len(self._paths)
        else:
            self._cap = self._factory(self.spec)
            self._probe(self._cap)
        self._opened = True
        return self

    def start(self) -> None:
        """Open if needed and start the reader thread (once)."""
        self.open()
        if self._thread is None:
            target = self._read_capture if self._cap is not None else self._read_images
            self._thread = threading.Thread(target=self._guard(target), name="edgeseg-source",
                                            daemon=True)
            self._thread.start()

    def _probe(self, cap: Capture) -> None:
        import cv2

        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0)
        self.fps = fps if 0 < fps < 1000 else None
        if not self.spec.live:
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            self.expected = n if n > 0 else None

    def close(self) -> None:
        """Stop the reader and release the device; safe to call twice."""
        self._stop.set()
        self._handoff.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        self.start()
        while True:
            item = self._handoff.get()
            if item is None:
                break
            self.frames += 1
            yield item
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    # -- reader thread -----------------------------------------------------------------------

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - handed to the consumer thread
                self._error = e
            finally:
                if self._stop.is_set() and self.stop_reason == "end":
                    self.stop_reason = "closed"
                self._handoff.close()

        return run

    def _warn(self, msg: str) -> None:
        self.warnings.append(msg)
        if self._warn_cb is not None:
            self._warn_cb(msg)

    def _deliver(self, img: np.ndarray, name: str, read_ms: float) -> None:
        frame = Frame(self._read, img, name, read_ms=read_ms,
                      stamp_ns=getattr(self._cap, "last_stamp_ns", None),
                      frame_id=str(getattr(self._cap, "last_frame_id", "") or ""))
        if self.prepare is not None and not self.spec.live:
            t = time.perf_counter()
            frame.batch = self.prepare(img)
            frame.prep_ms = (time.perf_counter() - t) * 1e3
        self._read += 1
        self._handoff.put(frame, self._stop)

    def _read_images(self) -> None:
        import cv2

        for path in self._paths:
            if self._stop.is_set():
                return
            t = time.perf_counter()
            img = _valid(cv2.imread(str(path), cv2.IMREAD_COLOR))
            if img is None:
                self.skipped += 1
                self._warn(f"skipped unreadable image {path}")
                continue
            self._deliver(img, path.stem, (time.perf_counter() - t) * 1e3)

    def _read_capture(self) -> None:
        fails = 0  # consecutive failed reads (files) / reconnect attempts since a good frame (live)
        while not self._stop.is_set():
            assert self._cap is not None
            t = time.perf_counter()
            ok, raw = self._cap.read()
            img = _valid(raw) if ok else None
            if img is not None:
                if fails and not self.spec.live:
                    self.skipped += fails
                    self._warn(f"{self.name}: skipped {fails} undecodable frame(s) before frame {self._read}")
                fails = 0
                self._deliver(img, f"{self._read:06d}", (time.perf_counter() - t) * 1e3)
            elif ok:  # the capture returned something that is not an image: skip it
                self.skipped += 1
                self._warn(f"{self.name}: skipped a corrupt frame after frame {self._read}")
            elif not self.spec.live:
                fails += 1
                if fails >= _FILE_MAX_FAILS:
                    if self.expected and self._read + self.skipped < self.expected:
                        self._warn(f"{self.name}: stopped after {self._read} of {self.expected} "
                                   "frames (file truncated or corrupt)")
                    return
            else:
                fails = self._reopen(fails)
                if fails < 0:
                    self.stop_reason = "source-lost"
                    return

    def _reopen(self, attempts_so_far: int) -> int:
        """Reopen a lost live source; returns attempts used so far, or -1 when out of attempts."""
        assert self._cap is not None
        self._cap.release()
        attempt = attempts_so_far
        while attempt < self.reconnect.attempts and not self._stop.is_set():
            attempt += 1
            delay = self.reconnect.delay(attempt)
            self._warn(f"{self.name}: no frame, reconnecting ({attempt}/{self.reconnect.attempts}) "
                       f"in {delay:.1f} s")
            self._sleep(delay)
            if self._stop.is_set():
                break
            try:
                cap = self._factory(self.spec)
            except EdgesegError:
                continue
            self._cap = cap
            return attempt
        if not self._stop.is_set():
            self._warn(f"{self.name}: source lost after {self.reconnect.attempts} reconnect "
                       "attempts; stopping")
        return -1
