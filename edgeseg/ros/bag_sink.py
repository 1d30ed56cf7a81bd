"""Segmentation outputs into a ROS 2 bag without ROS, through ``rosbags``.

``out.mcap`` (one MCAP file: Foxglove, ``ros2 bag play`` on Iron and later) or ``rosbag2:DIR`` /
``rosbag2://DIR`` (a rosbag2 folder with metadata.yaml, MCAP storage, ``?storage=sqlite3``).
Options: ``?ns=/edgeseg&outputs=class_mask,...&alpha=0.5&class_ids=train|label``,
``distro=humble|jazzy`` and ``partial=keep``.

Which ROS 2 reads what: ``distro=humble`` (the default) writes rosbag2 metadata version 8, where
each topic's ``offered_qos_profiles`` is one string of YAML with integer enums: Humble's
metadata reader takes that field ``as<std::string>`` and its rosbag2_transport parses
history/reliability/durability/liveliness ``as<int>``, and Iron and Jazzy read version 8 too.
``distro=jazzy`` writes version 9 (a YAML list with string enums), which only Jazzy and later
read. A rosbag2 folder on Humble needs the MCAP storage plugin (``ros-humble-rosbag2-storage-mcap``)
or ``?storage=sqlite3``.

The bag is written under a hidden staging folder next to the target, in a folder already named
as the target, so the storage file (``DIR/DIR.mcap``) and the relative paths recorded in
metadata.yaml and in a bare .mcap's embedded rosbag2 metadata name the final file. ``close``
moves it into place; an error (in the pipeline: :meth:`BagSink.abort`; in the writer, a full
disk) or a run that wrote no frame leaves no output, or with ``partial=keep`` a bag named
``out.partial.mcap`` / ``DIR.partial``.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.atomic import publish
from edgeseg.errors import EdgesegError
from edgeseg.ros.bag import _require_rosbags, _split
from edgeseg.ros.messages import (
    DEFAULT_OUTPUTS,
    OUTPUTS,
    OutputRenderer,
    make_header,
    parse_outputs,
    rosbags_types,
    rosbags_typestore,
)
from edgeseg.video.sinks import Sink

__all__ = ["DISTRO_VERSIONS", "BagSink", "BagSinkSpec", "open_bag_sink", "parse_bag_sink"]

# rosbag2 metadata version per reader: 8 is the newest Humble parses (QoS as a string of YAML
# with integer enums); 9 (a YAML list with string enums) is Jazzy's own.
DISTRO_VERSIONS = {"humble": 8, "jazzy": 9}
DEFAULT_DISTRO = "humble"
_SINK_KEYS = ("ns", "outputs", "storage", "alpha", "class_ids", "distro", "partial")


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
    distro: str = DEFAULT_DISTRO
    keep_partial: bool = False

    @property
    def version(self) -> int:
        """The rosbag2 metadata version the chosen distro reads."""
        return DISTRO_VERSIONS[self.distro]

    @property
    def partial_path(self) -> Path:
        """Where ``partial=keep`` leaves what an interrupted run wrote."""
        if self.folder:
            return self.path.with_name(f"{self.path.name}.partial")
        return self.path.with_name(f"{self.path.stem}.partial{self.path.suffix}")


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
    distro = opts.get("distro", DEFAULT_DISTRO).lower()
    if distro not in DISTRO_VERSIONS:
        raise EdgesegError(f"--sink {spec!r}: distro must be {' or '.join(DISTRO_VERSIONS)} "
                           f"(the ROS 2 that reads the bag), got {distro!r}")
    partial = opts.get("partial", "")
    if partial not in ("", "keep"):
        raise EdgesegError(f"--sink {spec!r}: partial takes only 'keep', got {partial!r}")
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
                       ids == "label", distro, partial == "keep")


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
        # rosbags names the storage file after the bag folder, so the folder inside the hidden
        # staging directory already carries the final name.
        stem = self.path.name if self.spec.folder else self.path.stem
        self._stage = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        self._bagdir = self._stage / stem
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
            shutil.rmtree(self._stage, ignore_errors=True)
            self._raise()

    def _open_bag(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(self._stage, ignore_errors=True)  # a leftover of this pid's last run
            self._stage.mkdir()
            bag = self._writer_cls(self._bagdir, version=self.spec.version,
                                   storage_plugin=self._plugin)
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
                    except OSError as e:  # a full disk, a removed folder: one line
                        self._error = EdgesegError(
                            f"--sink {self.path}: cannot write the bag ({e.strerror or e})")
                    except BaseException as e:  # noqa: BLE001
                        self._error = e
        finally:
            try:
                self._bag.close()
            except BaseException as e:  # noqa: BLE001
                self._error = self._error or EdgesegError(
                    f"--sink {self.path}: cannot finalise the bag ({e})")

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

    def _drain(self) -> bool:
        """Stop the writer thread (the bag is closed there); False when already done."""
        if self._thread is None:
            return False
        thread, self._thread = self._thread, None
        self._q.put(None)
        thread.join()
        return True

    def close(self) -> None:
        """Drain and finalise, then move the bag into place; after a writer error or with no
        frame written, discard it (or keep it as the partial) and raise."""
        if not self._drain():
            return
        if self._error is None and self.frames == 0:
            self._error = EdgesegError(f"--sink {self.path}: no frames reached it; nothing "
                                       "written (is the source empty?)")
        if self._error is not None:
            self._discard()
            self._raise()
        self._publish(self.path)

    def abort(self) -> None:
        """The run failed: no output (or, with ``partial=keep``, the partial one). The run's own
        error is the one the caller sees, so a writer error here is dropped."""
        if self._drain():
            self._error = None
            self._discard()

    def _discard(self) -> None:
        try:
            if self.spec.keep_partial and self.frames:
                partial = self.spec.partial_path
                if partial.is_dir():  # an older partial of the same target
                    shutil.rmtree(partial)
                self._publish(partial)
        finally:
            shutil.rmtree(self._stage, ignore_errors=True)

    def _publish(self, target: Path) -> None:
        if self.spec.folder:
            publish(self._bagdir, target)
        else:  # the one storage file; its embedded metadata names <stem>.mcap
            publish(self._bagdir / f"{self._bagdir.name}.mcap", target)
        shutil.rmtree(self._stage, ignore_errors=True)


def open_bag_sink(spec: Any, *, classes: Sequence[str], palette: Sequence[Sequence[int]],
                  fps: float | None = None, **kw: Any) -> BagSink:
    """Opener for the sink registry (a spec string or anything with a ``spec`` attribute)."""
    text = spec if isinstance(spec, (str, BagSinkSpec)) else str(spec.spec)
    return BagSink(text, classes=classes, palette=palette, fps=fps)
