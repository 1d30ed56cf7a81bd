"""Frame sources: cameras, CSI/GStreamer, network streams, video files and image folders.

``parse_source(spec)`` reads what the user typed into a :class:`SourceSpec`, touching no
device; :func:`open_capture` opens a capture-backed spec and :func:`list_images` lists an
image, folder or glob. Reading them on a thread (:class:`FrameSource`, :class:`Frame`,
:class:`Reconnect`) is in :mod:`edgeseg.video.reader`; those names are importable from here too.

A source that cannot be opened raises :class:`EdgesegError` naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from edgeseg.errors import EdgesegError
from edgeseg.video.registry import SOURCES, match_source

__all__ = ["IMAGE_SUFFIXES", "LIVE_KINDS", "SourceSpec",
           "csi_pipeline", "gstreamer_available", "list_images", "open_capture", "parse_source"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
LIVE_KINDS = ("camera", "v4l2", "csi", "gstreamer", "stream")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp")
_OPTION_KEYS = ("width", "height", "fps", "flip")
# DESIGN.md section 8: a 720p30 mode exists on every common Jetson CSI sensor (IMX219, IMX477).
CSI_DEFAULTS = {"width": 1280, "height": 720, "fps": 30, "flip": 0}


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
    query: dict[str, str] = field(default_factory=dict)  # ?key=value of a registered kind

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

    * any kind in :mod:`edgeseg.video.registry` (ROS bags, ...), by scheme, suffix or probe;
      its ``?key=value`` options land in ``query``.

    Only the directory check and registered probes look at the filesystem.
    """
    s = str(spec).strip()
    if not s:
        raise EdgesegError("empty --source: give a camera index, device, URL, file, folder or glob")
    entry = match_source(s)
    if entry is not None:
        head, _, qs = s.partition("?")
        return SourceSpec(entry.kind, head, s, query=dict(parse_qsl(qs, keep_blank_values=True)))
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
    """A ``cv2.VideoCapture`` for a capture-backed spec (or the capture of a registered kind),
    or EdgesegError naming the source."""
    if spec.kind in SOURCES:
        return SOURCES[spec.kind].open(spec)  # type: ignore[no-any-return]
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
