"""Frame sources: cameras, CSI/GStreamer, network streams, video files and image folders.

``parse_source(spec)`` reads what the user typed into a :class:`SourceSpec`, touching no
device; :class:`FrameSource` opens it and reads on its own thread:

* live sources hand over the *latest* frame: when inference is slower than the camera the older
  frame is replaced and counted in ``dropped``, so latency stays one frame deep. A lost live
  source is reopened a bounded number of times with backoff, then the run stops cleanly.
* files, folders and globs lose nothing: frames are read ahead into a small bounded queue so
  decoding (and pre-processing) overlaps inference.

An unreadable frame or image is skipped with a warning and counted in ``skipped``; a source
that cannot be opened raises :class:`EdgesegError` naming it.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import numpy as np

from edgeseg.errors import EdgesegError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["IMAGE_SUFFIXES", "LIVE_KINDS", "Frame", "FrameSource", "Reconnect", "SourceSpec",
           "csi_pipeline", "gstreamer_available", "list_images", "open_capture", "parse_source"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
LIVE_KINDS = ("camera", "v4l2", "csi", "gstreamer", "stream")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp")
_OPTION_KEYS = ("width", "height", "fps", "flip")
# DESIGN.md section 8: a 720p30 mode exists on every common Jetson CSI sensor (IMX219, IMX477).
CSI_DEFAULTS = {"width": 1280, "height": 720, "fps": 30, "flip": 0}
# Consecutive failed reads that end a file (FFmpeg already retries inside one read()).
_FILE_MAX_FAILS = 5
# Warnings kept on the source (a flaky camera must not grow memory over a days-long run).
_MAX_WARNINGS = 100


@dataclass(frozen=True)
class SourceSpec:
    """A parsed ``--source``: ``kind`` camera, v4l2, csi, gstreamer, stream (live) or video,
    image, folder, glob; ``target`` what ``cv2.VideoCapture`` opens or the folder / pattern;
    ``api`` the OpenCV backend; ``options`` requested width/height/fps (CSI: flip)."""

    kind: str
    target: str | int
    spec: str
    api: str = "any"  # any | v4l2 | gstreamer | ffmpeg
    options: dict[str, int] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.kind in LIVE_KINDS

    @property
    def name(self) -> str:
        """The spec as shown in messages and reports, with any URL password masked."""
        return _redact(self.spec) if self.kind == "stream" else self.spec


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _split_options(spec: str, rest: str) -> tuple[str, dict[str, int]]:
    """``"0?width=1280&fps=30"`` -> ``("0", {...})``; unknown keys or non-integers are errors."""
    if "?" not in rest:
        return rest, {}
    head, query = rest.split("?", 1)
    opts: dict[str, int] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _OPTION_KEYS:
            raise EdgesegError(f"source {spec!r}: unknown option {key!r} (expected {', '.join(_OPTION_KEYS)})")
        if not value.isdigit() or (key != "flip" and int(value) == 0):
            raise EdgesegError(f"source {spec!r}: {key} must be a positive integer, got {value!r}")
        opts[key] = int(value)
    return head, opts


def csi_pipeline(sensor_id: int, width: int, height: int, fps: int, flip: int = 0) -> str:
    """The GStreamer pipeline of a Jetson CSI camera (nvarguscamerasrc), DESIGN.md section 8."""
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1 ! "
        f"nvvidconv flip-method={flip} ! video/x-raw,format=BGRx ! "
        "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1"
    )


def parse_source(spec: str | int) -> SourceSpec:
    """What ``--source`` means, without opening anything.

    * ``0``, ``1`` ... camera index; ``/dev/videoN`` V4L2 device; both take ``?width=&height=&fps=``
    * ``csi://N[?width=&height=&fps=&flip=]`` Jetson CSI camera via nvarguscamerasrc
    * ``gst:PIPELINE`` or any string with `` ! `` a GStreamer pipeline ending in appsink
    * ``rtsp://``, ``rtmp://``, ``http(s)://`` ... network stream (FFmpeg)
    * a path with ``*?[`` a glob of images; an existing directory: its images; a file with an
      image suffix: that image; any other path: a video file.

    Only the directory check looks at the filesystem.
    """
    s = str(spec).strip()
    if not s:
        raise EdgesegError("empty --source: give a camera index, device, URL, file, folder or glob")
    if re.fullmatch(r"(\d+|/dev/video\d+)(\?.*)?", s):
        head, opts = _split_options(s, s)
        if head.isdigit():
            return SourceSpec("camera", int(head), s, "any", opts)
        return SourceSpec("v4l2", head, s, "v4l2", opts)
    if s.startswith("gst:") or " ! " in s:
        pipeline = s[4:].strip() if s.startswith("gst:") else s
        if "appsink" not in pipeline:
            raise EdgesegError(f"source {s!r}: a GStreamer pipeline must end in appsink")
        return SourceSpec("gstreamer", pipeline, s, "gstreamer")
    scheme = s.split("://", 1)[0].lower() if "://" in s else ""
    if scheme == "csi":
        sensor, opts = _split_options(s, s.split("://", 1)[1])
        if not sensor.isdigit():
            raise EdgesegError(f"source {s!r}: expected csi://N with a sensor id N, e.g. csi://0")
        o = {**CSI_DEFAULTS, **opts}
        pipe = csi_pipeline(int(sensor), o["width"], o["height"], o["fps"], o["flip"])
        return SourceSpec("csi", pipe, s, "gstreamer", o)
    if scheme in STREAM_SCHEMES:
        return SourceSpec("stream", s, s, "ffmpeg")
    if scheme and scheme != "file":
        raise EdgesegError(f"source {s!r}: unknown scheme {scheme}:// (expected csi, {', '.join(STREAM_SCHEMES)})")
    path = s[len("file://"):] if scheme == "file" else s
    if any(c in path for c in "*?["):
        return SourceSpec("glob", path, s)
    if path.endswith(("/", "\\")) or Path(path).is_dir():
        return SourceSpec("folder", path, s)
    if Path(path).suffix.lower() in IMAGE_SUFFIXES:
        return SourceSpec("image", path, s)
    return SourceSpec("video", path, s, "ffmpeg")


# --------------------------------------------------------------------------------------------
# Opening captures


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` a source uses (tests pass fakes)."""

    def isOpened(self) -> bool: ...
    def read(self) -> tuple[bool, Any]: ...
    def release(self) -> None: ...
    def get(self, prop: int) -> float: ...


def gstreamer_available() -> bool:
    """Whether this OpenCV was built with GStreamer (PyPI wheels are not; JetPack's is)."""
    import cv2

    m = re.search(r"GStreamer:\s*(\S+)", cv2.getBuildInformation())
    return m is not None and m.group(1).upper() != "NO"


def open_capture(spec: SourceSpec) -> Capture:
    """A ``cv2.VideoCapture`` for a capture-backed spec, or EdgesegError naming the source."""
    import cv2

    if spec.api == "gstreamer" and not gstreamer_available():
        raise EdgesegError(
            f"source {spec.name!r} needs OpenCV built with GStreamer; this OpenCV "
            f"{cv2.__version__} has none (PyPI wheels never do): use JetPack's python3-opencv "
            "or the L4T container"
        )
    if spec.kind == "video" and not Path(str(spec.target)).is_file():
        raise EdgesegError(f"video file not found: {spec.target}")
    if spec.kind == "v4l2" and not Path(str(spec.target)).exists():
        raise EdgesegError(f"cannot open {spec.target}: no such device")
    api = {"any": cv2.CAP_ANY, "v4l2": cv2.CAP_V4L2, "gstreamer": cv2.CAP_GSTREAMER,
           "ffmpeg": cv2.CAP_FFMPEG}[spec.api]
    params: list[int] = []
    if spec.kind == "stream":  # fail in seconds, not FFmpeg's default 30 s
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 10_000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5_000]
    cap = cv2.VideoCapture(spec.target, api, params) if params else cv2.VideoCapture(spec.target, api)
    if not cap.isOpened():
        cap.release()
        why = {
            "camera": "no such camera, busy, or no permission",
            "v4l2": "busy, not a capture device, or no permission",
            "csi": "nvarguscamerasrc failed: is nvargus-daemon running, /tmp/argus_socket mounted?",
            "gstreamer": "the pipeline did not start",
            "stream": "unreachable, wrong path or credentials, or timed out",
            "video": "not a video, truncated, or a codec this OpenCV cannot decode",
        }.get(spec.kind, "unknown reason")
        raise EdgesegError(f"cannot open source {spec.name!r}: {why}")
    if spec.kind in ("camera", "v4l2"):
        for key, prop in (("width", cv2.CAP_PROP_FRAME_WIDTH), ("height", cv2.CAP_PROP_FRAME_HEIGHT),
                          ("fps", cv2.CAP_PROP_FPS)):
            if key in spec.options:
                cap.set(prop, spec.options[key])
    return cap


def _natural_key(p: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)] + [str(p)]


def list_images(spec: SourceSpec) -> list[Path]:
    """The image files of an image/folder/glob spec in natural order (frame_2 before frame_10)."""
    target = str(spec.target)
    if spec.kind == "image":
        if not Path(target).is_file():
            raise EdgesegError(f"image not found: {target}")
        return [Path(target)]
    if spec.kind == "folder":
        if not Path(target).is_dir():
            raise EdgesegError(f"folder not found: {target}")
        files = [p for p in Path(target).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        if not files:
            raise EdgesegError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {target}")
        return sorted(files, key=_natural_key)
    import glob

    files = [Path(p) for p in glob.glob(target, recursive=True) if Path(p).is_file()]
    if not files:
        raise EdgesegError(f"no files match {target}")
    return sorted(files, key=_natural_key)


# --------------------------------------------------------------------------------------------
# Threaded reading


@dataclass(frozen=True)
class Reconnect:
    """How a lost live source is reopened: ``attempts`` tries, waiting ``backoff_s`` doubling
    up to ``max_backoff_s`` between them. The count restarts after every good frame."""

    attempts: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))


@dataclass
class Frame:
    """One frame: ``index`` counts frames read (gaps = dropped), ``name`` names outputs."""

    index: int
    image: np.ndarray
    name: str
    batch: np.ndarray | None = None  # pre-processed on the reader thread (files only)
    read_ms: float = 0.0
    prep_ms: float = 0.0


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
        frame = Frame(self._read, img, name, read_ms=read_ms)
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
