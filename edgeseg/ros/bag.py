"""Robot logs in and out without ROS: ROS 2 bags (sqlite3, MCAP), bare .mcap/.db3 files and
ROS 1 .bag files through ``rosbags`` (pure Python).

Source: ``recording.mcap?topic=/camera/image_raw&start=SEC&end=SEC`` (also a rosbag2 folder,
``x.db3`` or ``x.bag``; ``start``/``end`` are seconds from the start of the bag).
:class:`BagCapture` reads sensor_msgs/Image or CompressedImage messages with the
``cv2.VideoCapture`` surface a :class:`~edgeseg.video.reader.FrameSource` uses, and sets
``last_stamp_ns`` / ``last_frame_id`` (the header's; the log time where the header stamp is 0)
after each ``read()``.

The sink (``out.mcap``, ``rosbag2:DIR``) is :mod:`edgeseg.ros.bag_sink`. Both kinds are
entries of :mod:`edgeseg.video.registry` (matched by suffix, scheme, or :mod:`edgeseg.ros.probe`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

from edgeseg.errors import EdgesegError, MissingDependencyError
from edgeseg.ros.messages import (
    COMPRESSED,
    IMAGE,
    header_stamp_ns,
    msg_to_bgr,
    rosbags_typestore,
)

__all__ = ["BAG_SUFFIXES", "BagCapture", "BagSpec", "list_topics", "open_bag_capture",
           "parse_bag_source"]

BAG_SUFFIXES = (".mcap", ".db3", ".bag")
IMAGE_TYPES = (IMAGE, COMPRESSED)
ROSBAGS_HINT = "pip install 'edgeseg[ros]' (or pip install rosbags)"
_SOURCE_KEYS = ("topic", "start", "end")


def _require_rosbags() -> None:
    try:
        import rosbags.highlevel  # noqa: F401
    except ImportError:
        raise MissingDependencyError("rosbags (ROS bag and MCAP reading/writing)",
                                     ROSBAGS_HINT) from None


def _split(spec: str) -> tuple[str, list[tuple[str, str]]]:
    s = spec.strip()
    s = s.removeprefix("rosbag2:")
    head, _, query = s.partition("?")
    return head, parse_qsl(query, keep_blank_values=True)


# --------------------------------------------------------------------------------------------
# Source


@dataclass(frozen=True)
class BagSpec:
    path: Path
    topic: str | None = None
    start_s: float | None = None
    end_s: float | None = None
    spec: str = ""


def parse_bag_source(spec: str) -> BagSpec:
    head, query = _split(spec)
    opts: dict[str, Any] = {}
    for key, value in query:
        if key not in _SOURCE_KEYS:
            raise EdgesegError(f"source {spec!r}: unknown option {key!r} (expected "
                               f"{', '.join(_SOURCE_KEYS)})")
        if key == "topic":
            opts[key] = value if value.startswith("/") else f"/{value}"
            continue
        try:
            opts[key] = float(value)
        except ValueError:
            opts[key] = -1.0
        if opts[key] < 0:
            raise EdgesegError(f"source {spec!r}: {key} must be seconds >= 0, got {value!r}")
    start, end = opts.get("start"), opts.get("end")
    if start is not None and end is not None and end <= start:
        raise EdgesegError(f"source {spec!r}: end ({end} s) must be after start ({start} s)")
    return BagSpec(Path(head), opts.get("topic"), start, end, spec)


_REPAIR = {".mcap": "mcap recover", ".bag": "rosbag reindex"}


def _reader_error(path: Path, err: BaseException) -> EdgesegError:
    why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if "Unrecognized storage format" in why or "metadata file" in why:
        return EdgesegError(f"{path} is not a bag: expected a rosbag2 folder (metadata.yaml), "
                            f"an .mcap or .db3 file, or a ROS 1 .bag ({why})")
    fix = _REPAIR.get(path.suffix.lower(), "ros2 bag reindex")
    return EdgesegError(f"cannot read bag {path}: truncated or corrupt ({why}); a recording "
                        f"cut off may be repaired with `{fix}`")


class BagCapture:
    """Frames of one image topic of a bag, through rosbags' AnyReader.

    ``get(CAP_PROP_FPS)`` is the topic's mean rate and ``get(CAP_PROP_FRAME_COUNT)`` its
    message count (unknown with a time range). Errors (no such topic, unsupported encoding,
    truncated file) raise :class:`EdgesegError` in one line.
    """

    def __init__(self, spec: BagSpec) -> None:
        _require_rosbags()
        from rosbags.highlevel import AnyReader

        self.spec = spec
        self.last_stamp_ns: int | None = None
        self.last_frame_id = ""
        path = spec.path
        if not path.exists():
            raise EdgesegError(f"bag not found: {path}")
        # A rosbag2 folder, or one bag file (bare .mcap / .db3 read without metadata.yaml).
        try:  # the constructor already reads (an unknown suffix, a folder without metadata)
            self._reader = AnyReader([path], default_typestore=rosbags_typestore(
                ros1=path.suffix.lower() == ".bag"))
            self._reader.open()
        except Exception as e:  # noqa: BLE001 - rosbags raises several kinds for one cause
            raise _reader_error(path, e) from None
        try:
            self._connections = self._pick_topic()
        except BaseException:
            self._reader.close()
            raise
        self.topic = self._connections[0].topic
        self.msgtype = self._connections[0].msgtype
        self.count = sum(c.msgcount for c in self._connections)
        if self.count == 0:  # a recording that never got a frame: nothing to run on
            self._reader.close()
            raise EdgesegError(f"bag {path}: topic {self.topic} has no messages")
        t0 = self._reader.start_time
        self._start = t0 + int(spec.start_s * 1e9) if spec.start_s is not None else None
        self._stop = t0 + int(spec.end_s * 1e9) if spec.end_s is not None else None
        duration = (self._reader.end_time - t0) / 1e9
        self.fps = (self.count - 1) / duration if self.count > 1 and duration > 0 else 0.0
        self._messages: Iterator[Any] | None = None
        self._open = True

    def _pick_topic(self) -> list[Any]:
        conns = self._reader.connections
        images = sorted({c.topic: c.msgtype for c in conns if c.msgtype in IMAGE_TYPES}.items())
        listing = ", ".join(f"{t} ({m.rsplit('/', 1)[-1]})" for t, m in images) or "none"
        topic = self.spec.topic
        if topic is None:
            if len(images) != 1:
                raise EdgesegError(f"bag {self.spec.path}: give ?topic=... (image topics: {listing})")
            topic = images[0][0]
        chosen = [c for c in conns if c.topic == topic]
        if not chosen:
            raise EdgesegError(f"bag {self.spec.path} has no topic {topic} (image topics: {listing})")
        if chosen[0].msgtype not in IMAGE_TYPES:
            raise EdgesegError(f"bag {self.spec.path}: topic {topic} is {chosen[0].msgtype}, not "
                               f"sensor_msgs/Image or CompressedImage (image topics: {listing})")
        return chosen

    # -- the cv2.VideoCapture surface ----------------------------------------------------------

    def isOpened(self) -> bool:
        return self._open

    def get(self, prop: int) -> float:
        import cv2

        if prop == cv2.CAP_PROP_FPS:
            return self.fps
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            ranged = self.spec.start_s is not None or self.spec.end_s is not None
            return 0.0 if ranged else float(self.count)
        return 0.0

    def read(self) -> tuple[bool, np.ndarray | None]:
        """``(True, bgr)`` per message (``bgr`` None when a compressed payload does not decode),
        ``(False, None)`` at the end."""
        if not self._open:
            return False, None
        if self._messages is None:
            self._messages = self._reader.messages(self._connections, start=self._start,
                                                   stop=self._stop)
        try:
            conn, log_ns, raw = next(self._messages)
            msg: Any = self._reader.deserialize(raw, conn.msgtype)
        except StopIteration:
            return False, None
        except Exception as e:  # noqa: BLE001 - a cut-off file surfaces as any reader error
            raise _reader_error(self.spec.path, e) from None
        stamp = header_stamp_ns(msg.header)
        self.last_stamp_ns = stamp if stamp > 0 else int(log_ns)
        self.last_frame_id = str(msg.header.frame_id)
        return True, msg_to_bgr(msg)

    def release(self) -> None:
        if self._open:
            self._open = False
            self._messages = None
            self._reader.close()


def list_topics(path: str | Path) -> list[dict[str, Any]]:
    """``[{topic, type, messages}]`` of a bag, sorted by topic."""
    _require_rosbags()
    from rosbags.highlevel import AnyReader

    path = Path(path)
    if not path.exists():
        raise EdgesegError(f"bag not found: {path}")
    try:  # the constructor already reads (an unknown suffix, a folder without metadata)
        reader = AnyReader([path], default_typestore=rosbags_typestore(ros1=path.suffix == ".bag"))
        reader.open()
    except Exception as e:  # noqa: BLE001
        raise _reader_error(path, e) from None
    try:
        return [{"topic": t, "type": info.msgtype or "?", "messages": info.msgcount}
                for t, info in sorted(reader.topics.items())]
    finally:
        reader.close()


def open_bag_capture(spec: Any) -> BagCapture:
    """Opener for the source registry: a spec string, a :class:`BagSpec`, or anything with a
    ``spec`` string attribute (a SourceSpec)."""
    if isinstance(spec, BagSpec):
        return BagCapture(spec)
    return BagCapture(parse_bag_source(spec if isinstance(spec, str) else str(spec.spec)))
