"""Where results go: a window, a video file, a folder of masks, or nowhere.

``parse_sink(spec)`` reads ``--sink``; :func:`open_sink` builds the :class:`Sink`. Sinks that
encode (video, folder) do it on a writer thread behind a small bounded queue, so encoding
overlaps inference without buffering without limit. ``close()`` always finalises: a video is
written to a hidden temporary name next to the target, released (which writes its index) and
renamed into place, also after an error or Ctrl-C, so the target path never holds a half-file.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseg.atomic import publish
from edgeseg.errors import EdgesegError
from edgeseg.video.frame import Frame
from edgeseg.video.overlay import colorize, palette_lut
from edgeseg.video.registry import SINKS, match_sink

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["MASK_FORMATS", "VIDEO_FOURCC", "Sink", "SinkSpec", "TeeSink", "check_sink", "display_available",
           "open_sink", "parse_sink"]

VIDEO_FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}
# Folder outputs: file suffix of each format (Cityscapes naming for the label maps).
MASK_FORMATS = {"color": "_color.png", "labelids": "_labelIds.png",
                "trainids": "_labelTrainIds.png", "vis": "_vis.png"}
DEFAULT_FPS = 30.0


@dataclass(frozen=True)
class SinkSpec:
    """A parsed ``--sink``: ``kind`` display | video | folder | none; ``target`` its path."""

    kind: str
    target: str
    spec: str


def parse_sink(spec: str) -> SinkSpec:
    """``display``, ``none``, ``out.mp4`` / ``out.avi`` (video), a folder (existing, or a
    path ending in ``/``, or one without a suffix), or any kind in :mod:`edgeseg.video.registry`
    (matched first, by scheme or suffix)."""
    s = spec.strip()
    low = s.lower()
    entry = match_sink(s)
    if entry is not None:
        return SinkSpec(entry.kind, s, s)
    if low in ("display", "window", "show"):
        return SinkSpec("display", "", s)
    if low in ("none", "null", ""):
        return SinkSpec("none", "", s or "none")
    suffix = Path(s).suffix.lower()
    if suffix in VIDEO_FOURCC:
        return SinkSpec("video", s, s)
    if s.endswith(("/", "\\")) or Path(s).is_dir() or not suffix:
        return SinkSpec("folder", s, s)
    raise EdgesegError(
        f"--sink {s!r}: expected display, none, a .mp4/.avi file or a folder "
        f"(unknown suffix {suffix})"
    )


def display_available() -> bool:
    """A window can open: on Linux that needs $DISPLAY or $WAYLAND_DISPLAY."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def check_sink(spec: SinkSpec, masks: Sequence[str] = ("color",)) -> None:
    """The checks that need no model (so the CLI can fail before loading one)."""
    if spec.kind == "display" and not display_available():
        raise EdgesegError("--sink display: no display available ($DISPLAY is not set); "
                           "use --sink out.mp4, a folder or none")
    if spec.kind == "folder" and (not masks or any(f not in MASK_FORMATS for f in masks)):
        raise EdgesegError(f"--masks: expected a comma list of {', '.join(MASK_FORMATS)}, "
                           f"got {','.join(masks) or 'nothing'}")


class Sink(ABC):
    """Receives each processed frame; ``write`` returns False when the user asked to stop.

    A sink may also define ``on_stats(stats: dict)``: the pipeline then hands it its running
    numbers about twice a second (fps, frames, latency_ms p50/p99, dropped, skipped, model,
    sources) and, before ``close()``, the final ones with a ``summary`` key.
    """

    needs_visual = True  # whether write() needs the rendered picture
    name = "none"

    @abstractmethod
    def write(self, frame: Frame, labels: np.ndarray, vis: np.ndarray | None) -> bool: ...

    def close(self) -> None:
        """Flush and finalise; idempotent."""

    def abort(self) -> None:
        """The run failed: drop what is half-written where the sink can (a file sink leaves no
        output), else finalise as ``close`` does; idempotent, and raises nothing of its own so
        the run's error is the one reported."""
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TeeSink(Sink):
    """Several sinks as one (repeatable ``--sink``): each frame goes to all of them; the run
    stops when any asks to; ``on_stats`` reaches those that take it; all are closed."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)
        self.needs_visual = any(s.needs_visual for s in self.sinks)
        self.name = " + ".join(s.name for s in self.sinks)

    def write(self, frame: Frame, labels: np.ndarray, vis: np.ndarray | None) -> bool:
        keep = True
        for s in self.sinks:
            keep = s.write(frame, labels, vis) and keep
        return keep

    def on_stats(self, stats: dict[str, Any]) -> None:
        for s in self.sinks:
            hook = getattr(s, "on_stats", None)
            if hook is not None:
                hook(stats)

    def close(self) -> None:
        errors: list[BaseException] = []
        for s in self.sinks:
            try:
                s.close()
            except BaseException as e:  # noqa: BLE001 - every sink is finalised, first error raised
                errors.append(e)
        if errors:
            raise errors[0]

    def abort(self) -> None:
        for s in self.sinks:
            s.abort()


class NullSink(Sink):
    needs_visual = False

    def write(self, frame: Frame, labels: np.ndarray, vis: np.ndarray | None) -> bool:
        return True


class _Writer:
    """One background thread running submitted jobs in order, behind a bounded queue.

    The first error a job raises is re-raised in the caller's thread by the next ``submit`` or
    by ``close``; later jobs are discarded.
    """

    def __init__(self, name: str, depth: int = 8) -> None:
        self._q: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._q.get()) is not None:
            if self._error is None:
                try:
                    job[0](*job[1])
                except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                    self._error = e

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._raise()
        self._q.put((fn, args))

    def close(self) -> None:
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()
        self._raise()


class VideoSink(Sink):
    """``.mp4`` (mp4v) or ``.avi`` (MJPG) through ``cv2.VideoWriter`` on a writer thread.

    The writer opens at the first frame (its size fixes the video size; later frames of another
    size are resized to it) and writes to ``.<name>.<pid>.partial<suffix>`` until ``close``.
    """

    def __init__(self, path: str | Path, fps: float | None = None) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.fps = fps if fps and fps > 0 else DEFAULT_FPS
        self.fourcc = VIDEO_FOURCC[self.path.suffix.lower()]
        self._tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.partial{self.path.suffix}")
        self._vw: Any = None
        self._size: tuple[int, int] | None = None
        self._worker: _Writer | None = None
        self.frames = 0

    def _open(self, w: int, h: int) -> None:
        import cv2

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise EdgesegError(f"--sink {self.path}: cannot create folder ({e.strerror})") from None
        vw = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter.fourcc(*self.fourcc), self.fps, (w, h))
        if not vw.isOpened():
            vw.release()
            self._tmp.unlink(missing_ok=True)
            raise EdgesegError(f"--sink {self.path}: cannot open a {self.fourcc} video writer "
                               f"for {w}x{h} (is the folder writable?)")
        self._vw, self._size = vw, (w, h)
        self._worker = _Writer("edgeseg-video-writer")

    def write(self, frame: Frame, labels: np.ndarray, vis: np.ndarray | None) -> bool:
        assert vis is not None
        h, w = vis.shape[:2]
        if self._vw is None:
            self._open(w, h)
        if (w, h) != self._size:
            import cv2

            vis = cv2.resize(vis, self._size, interpolation=cv2.INTER_AREA)
        assert self._worker is not None
        self._worker.submit(self._vw.write, vis)
        self.frames += 1
        return True

    def close(self) -> None:
        if self._vw is None:
            return
        try:
            if self._worker is not None:
                self._worker.close()
        finally:
            self._vw.release()
            self._vw = None
            publish(self._tmp, self.path)


class FolderSink(Sink):
    """PNG label maps per frame: ``<name>_color.png`` (palette colours), ``_labelIds.png``
    (Cityscapes label ids), ``_labelTrainIds.png`` (train ids), ``_vis.png`` (the picture)."""

    def __init__(
        self, path: str | Path, classes: Sequence[str], palette: Sequence[Sequence[int]],
        formats: Sequence[str] = ("color",),
    ) -> None:
        check_sink(SinkSpec("folder", str(path), str(path)), formats)
        if "labelids" in formats:
            from edgeseg.data.cityscapes import CLASSES

            if list(classes) != list(CLASSES):
                raise EdgesegError(
                    f"--masks labelids needs a Cityscapes 19-class model; this one has "
                    f"{len(classes)} classes: use trainids"
                )
        self.path = Path(path)
        self.name = str(path)
        self.formats = tuple(dict.fromkeys(formats))
        self.needs_visual = "vis" in self.formats
        self.lut = palette_lut(palette)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise EdgesegError(f"--sink {self.path}: cannot create folder ({e.strerror})") from None
        self._worker: _Writer | None = _Writer("edgeseg-mask-writer")
        self.frames = 0

    def _save(self, name: str, labels: np.ndarray, vis: np.ndarray | None) -> None:
        import cv2

        for fmt in self.formats:
            if fmt == "color":
                img = colorize(labels, self.lut)
            elif fmt == "labelids":
                from edgeseg.data.cityscapes import train_ids_to_ids

                img = train_ids_to_ids(labels)
            elif fmt == "trainids":
                img = labels
            else:
                assert vis is not None
                img = vis
            out = self.path / f"{name}{MASK_FORMATS[fmt]}"
            if not cv2.imwrite(str(out), img):
                raise EdgesegError(f"--sink {self.path}: could not write {out}")

    def write(self, frame: Frame, labels: np.ndarray, vis: np.ndarray | None) -> bool:
        if self._worker is None:
            raise EdgesegError(f"--sink {self.path}: written after close")
        self._worker.submit(self._save, frame.name, labels, vis)
        self.frames += 1
        return True

    def close(self) -> None:
        if self._worker is not None:
            worker, self._worker = self._worker, None
            worker.close()


class DisplaySink(Sink):
    """A ``cv2.imshow`` window; ``q``, Esc or closing the window stops the run."""

    name = "display"

    def __init__(self, window: str = "edgeseg") -> None:
        import cv2

        check_sink(SinkSpec("display", "", "display"))
        self.window = window
        try:
            cv2.namedWindow(window, cv2.WINDOW_NORMAL)
        except cv2.error as e:
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise EdgesegError(f"--sink display: cannot open a window ({msg})") from None
        self._open = True

    def write(self, frame: Frame, labels: np.ndarray, vis: np.ndarray | None) -> bool:
        import cv2

        assert vis is not None
        cv2.imshow(self.window, vis)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            return False
        return cv2.getWindowProperty(self.window, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        if self._open:
            import cv2

            self._open = False
            cv2.destroyWindow(self.window)
            cv2.waitKey(1)


def open_sink(
    sink: str | SinkSpec,
    *,
    classes: Sequence[str],
    palette: Sequence[Sequence[int]],
    fps: float | None = None,
    masks: Sequence[str] = ("color",),
    **options: Any,
) -> Sink:
    """Build the sink for a spec; ``fps`` (the source's) sets a video's rate (default 30).
    ``options`` go to registered kinds only (e.g. the web sink's token, max_clients)."""
    spec = sink if isinstance(sink, SinkSpec) else parse_sink(sink)
    if spec.kind in SINKS:
        return SINKS[spec.kind].open(spec, classes=classes, palette=palette, fps=fps,  # type: ignore[no-any-return]
                                     masks=masks, **options)
    if spec.kind == "display":
        return DisplaySink()
    if spec.kind == "video":
        return VideoSink(spec.target, fps)
    if spec.kind == "folder":
        return FolderSink(spec.target, classes, palette, masks)
    return NullSink()
