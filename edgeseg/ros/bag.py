"""Robot logs in and out without ROS: ROS 2 bags (sqlite3, MCAP), bare .mcap/.db3 files and
ROS 1 .bag files through ``rosbags`` (pure Python).

Source: ``recording.mcap?topic=/camera/image_raw&start=SEC&end=SEC`` (also a rosbag2 folder,
``x.db3`` or ``x.bag``; ``start``/``end`` are seconds from the start of the bag).
:class:`BagCapture` reads sensor_msgs/Image or CompressedImage messages with the
``cv2.VideoCapture`` surface a :class:`~edgeseg.video.reader.FrameSource` uses, and sets
``last_stamp_ns`` / ``last_frame_id`` (the header's; the log time where the header stamp is 0)
after each ``read()``.

Sink: ``out.mcap`` (one MCAP file: Foxglove, ``ros2 bag play`` on Iron and later) or
``rosbag2:DIR`` / ``rosbag2://DIR`` (a rosbag2 folder with metadata.yaml, MCAP storage;
``?storage=sqlite3``; what Humble's ``ros2 bag play DIR`` wants). Both take
``?ns=/edgeseg&outputs=class_mask,...&alpha=0.5&class_ids=train|label``. Both kinds are entries
of :mod:`edgeseg.video.registry` (matched by suffix, scheme, or :mod:`edgeseg.ros.probe`).
:class:`BagSink` writes the node's topics and types (``<ns>/class_mask`` ... and
``<ns>/label_info``, LabelInfo once, offered as transient-local in the metadata) stamped with
the input stamps; it writes to a hidden temporary next to the target and renames on ``close``,
which always runs, so the target is a finalised, readable bag or absent.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

from edgeseg.errors import EdgesegError, MissingDependencyError
from edgeseg.ros.messages import (
    COMPRESSED,
    DEFAULT_OUTPUTS,
    IMAGE,
    OUTPUTS,
    OutputRenderer,
    header_stamp_ns,
    make_header,
    msg_to_bgr,
    parse_outputs,
    rosbags_types,
    rosbags_typestore,
)
from edgeseg.video.sinks import Sink

__all__ = ["BAG_SUFFIXES", "BagCapture", "BagSink", "BagSinkSpec", "BagSpec",
           "list_topics", "open_bag_capture", "open_bag_sink", "parse_bag_sink",
           "parse_bag_source"]

BAG_SUFFIXES = (".mcap", ".db3", ".bag")
IMAGE_TYPES = (IMAGE, COMPRESSED)
ROSBAGS_HINT = "pip install 'edgeseg[ros]' (or pip install rosbags)"
_SOURCE_KEYS = ("topic", "start", "end")
_SINK_KEYS = ("ns", "outputs", "storage", "alpha", "class_ids")


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


# --------------------------------------------------------------------------------------------
# Sink


@dataclass(frozen=True)
class BagSinkSpec:
    """``out.mcap`` -> one MCAP file; ``rosbag2:DIR`` -> a rosbag2 folder (``storage``)."""

    path: Path
    folder: bool
    storage: str = "mcap"
    namespace: str = "/edgeseg"
    outputs: tuple[str, ...] = field(default=DEFAULT_OUTPUTS)
    spec: str = ""
    alpha: float = 0.5
    label_ids: bool = False


def parse_bag_sink(spec: str) -> BagSinkSpec:
    folder = spec.strip().startswith("rosbag2:")
    head, query = _split(spec)
    if not head:
        raise EdgesegError(f"--sink {spec!r}: give a path, e.g. out.mcap or rosbag2:out_bag")
    opts: dict[str, Any] = {}
    for key, value in query:
        if key not in _SINK_KEYS:
            raise EdgesegError(f"--sink {spec!r}: unknown option {key!r} (expected "
                               f"{', '.join(_SINK_KEYS)})")
        opts[key] = value
    storage = opts.get("storage", "mcap").lower()
    if storage not in ("mcap", "sqlite3"):
        raise EdgesegError(f"--sink {spec!r}: storage must be mcap or sqlite3, got {storage!r}")
    if storage != "mcap" and not folder:
        raise EdgesegError(f"--sink {spec!r}: a .mcap file is MCAP; use rosbag2:DIR?storage=sqlite3")
    ns = "/" + opts.get("ns", "/edgeseg").strip("/")
    outputs = parse_outputs(opts["outputs"], "--sink outputs") if "outputs" in opts else DEFAULT_OUTPUTS
    if "confidence" in outputs:
        raise EdgesegError(f"--sink {spec!r}: confidence needs the network's logits; only the "
                           "ROS 2 node publishes it")
    try:
        alpha = float(opts.get("alpha", 0.5))
    except ValueError:
        alpha = -1.0
    if not 0.0 <= alpha <= 1.0:
        raise EdgesegError(f"--sink {spec!r}: alpha must be in [0, 1], got {opts['alpha']!r}")
    ids = opts.get("class_ids", "train")
    if ids not in ("train", "label"):
        raise EdgesegError(f"--sink {spec!r}: class_ids must be train or label, got {ids!r}")
    return BagSinkSpec(Path(head), folder, storage, ns.rstrip("/") or "", outputs, spec, alpha,
                       ids == "label")


def _qos(transient_local: bool) -> Any:
    """The QoS the node offers (reliable; LabelInfo transient-local), for the bag metadata."""
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    never = QosTime(sec=2147483647, nsec=4294967295)  # rmw's "infinite"
    return Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE,
               QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
               never, never, QosLiveliness.AUTOMATIC, never, False)


class BagSink(Sink):
    """The node's outputs into a bag, one message per output per frame, on a writer thread.

    Masks are at the frame's size (the labels the pipeline hands over); the overlay is drawn
    here (no legend or HUD), so ``needs_visual`` is False.
    """

    needs_visual = False

    def __init__(self, spec: str | BagSinkSpec, *, classes: Sequence[str],
                 palette: Sequence[Sequence[int]], alpha: float | None = None,
                 label_ids: bool | None = None, fps: float | None = None) -> None:
        _require_rosbags()
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.spec = spec if isinstance(spec, BagSinkSpec) else parse_bag_sink(spec)
        self.path = self.spec.path
        self.name = str(self.path)
        if self.spec.folder and self.path.exists():
            raise EdgesegError(f"--sink {self.path}: exists already; a rosbag2 folder is never "
                               "overwritten")
        self.store = rosbags_typestore()
        self.types = rosbags_types(self.store)
        self.renderer = OutputRenderer(
            self.types, classes, palette, alpha=self.spec.alpha if alpha is None else alpha,
            label_ids=self.spec.label_ids if label_ids is None else label_ids)
        self.outputs = self.spec.outputs
        self.frame_ns = int(1e9 / fps) if fps and fps > 0 else int(1e9 / 30)
        stem = self.path.name.removesuffix(".mcap") if not self.spec.folder else self.path.name
        self._tmp = self.path.with_name(f".{stem}.{os.getpid()}.partial")
        self._plugin = StoragePlugin.MCAP if self.spec.storage == "mcap" else StoragePlugin.SQLITE3
        self._writer_cls = Writer
        self._bag: Any = None
        self._conns: dict[str, Any] = {}
        self._label_info_done = False
        self.frames = 0
        # sqlite3 storage may only be used from the thread that opened it, so the writer
        # thread opens, writes and closes the bag.
        self._q: queue.Queue[tuple[Any, ...] | None] = queue.Queue(8)
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = threading.Thread(
            target=self._loop, name="edgeseg-bag-writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._bag is None:
            self._thread.join()
            self._thread = None
            self._raise()

    def _open_bag(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(self._tmp, ignore_errors=True)
            bag = self._writer_cls(self._tmp, version=9, storage_plugin=self._plugin)
            bag.open()
        except OSError as e:
            raise EdgesegError(f"--sink {self.path}: cannot create the bag ({e.strerror})") from None
        self._bag = bag
        self._conns = {
            name: bag.add_connection(self.topic(name), OUTPUTS[name], typestore=self.store,
                                     offered_qos_profiles=[_qos(name == "label_info")])
            for name in self.outputs
        }

    def _loop(self) -> None:
        """Open, then write jobs in order until None; always close what was opened. The first
        error is kept (re-raised by the next ``write`` or by ``close``); later jobs are dropped."""
        try:
            self._open_bag()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            self._error = e
        finally:
            self._ready.set()
        if self._bag is None:
            return
        try:
            while (job := self._q.get()) is not None:
                if self._error is None:
                    try:
                        self._save(*job)
                    except BaseException as e:  # noqa: BLE001
                        self._error = e
        finally:
            try:
                self._bag.close()
            except BaseException as e:  # noqa: BLE001
                self._error = self._error or e

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def topic(self, output: str) -> str:
        return f"{self.spec.namespace}/{output}"

    def _put(self, name: str, stamp_ns: int, msg: Any) -> None:
        self._bag.write(self._conns[name], stamp_ns, self.store.serialize_cdr(msg, OUTPUTS[name]))

    def _save(self, stamp_ns: int, frame_id: str, bgr: np.ndarray, labels: np.ndarray) -> None:
        header = make_header(self.types, stamp_ns, frame_id)
        if "label_info" in self._conns and not self._label_info_done:
            self._put("label_info", stamp_ns, self.renderer.label_info(header))
            self._label_info_done = True
        for name, msg in self.renderer.render(self.outputs, header, bgr, labels).items():
            self._put(name, stamp_ns, msg)

    def write(self, frame: Any, labels: np.ndarray, vis: np.ndarray | None) -> bool:
        if self._thread is None:
            raise EdgesegError(f"--sink {self.path}: written after close")
        self._raise()
        stamp = getattr(frame, "stamp_ns", None)
        stamp = int(stamp) if stamp is not None else frame.index * self.frame_ns
        self._q.put((stamp, str(getattr(frame, "frame_id", "") or ""), frame.image, labels))
        self.frames += 1
        return True

    def close(self) -> None:
        """Drain, finalise the bag (also after an error), then rename it into place."""
        if self._thread is None:
            return
        thread, self._thread = self._thread, None
        self._q.put(None)
        thread.join()
        self._finish()
        self._raise()

    def _finish(self) -> None:
        if self.spec.folder:
            os.replace(self._tmp, self.path)
            return
        inner = next(self._tmp.glob("*.mcap"))
        os.replace(inner, self.path)
        shutil.rmtree(self._tmp, ignore_errors=True)


def open_bag_sink(spec: Any, *, classes: Sequence[str], palette: Sequence[Sequence[int]],
                  fps: float | None = None, **kw: Any) -> BagSink:
    """Opener for the sink registry (a spec string or anything with a ``spec`` attribute)."""
    text = spec if isinstance(spec, (str, BagSinkSpec)) else str(spec.spec)
    return BagSink(text, classes=classes, palette=palette, fps=fps)
