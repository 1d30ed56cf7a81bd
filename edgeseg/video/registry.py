"""One registry of frame sources and result sinks, keyed by URI scheme or file suffix.

jetson-inference's ``videoSource.Create(uri)`` / ``videoOutput.Create(uri)`` are the model: a
``--source`` or ``--sink`` string is matched against the entries here, and the matching entry
names the function that opens it. Built-in kinds (cameras, CSI, RTSP, video files, windows,
mask folders) are parsed by :mod:`edgeseg.video.sources` / :mod:`edgeseg.video.sinks`; every other
kind (web page, WebRTC, ROS bags, ...) is one entry added here, with its opener in its own
package, named as a ``"module:attr"`` string so that this module imports none of them.

A source opener takes the :class:`~edgeseg.video.sources.SourceSpec` and returns a capture
(``read() -> (ok, bgr)``, ``get(prop)``, ``isOpened()``, ``release()``); a capture that knows
when a frame was taken sets ``last_stamp_ns`` (and ``last_frame_id``) after each ``read()``.
A sink opener takes the :class:`~edgeseg.video.sinks.SinkSpec` and the keyword arguments of
:func:`edgeseg.video.sinks.open_sink` and returns a :class:`~edgeseg.video.sinks.Sink`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "SINKS",
    "SOURCES",
    "IOKind",
    "match_sink",
    "match_source",
    "register_sink",
    "register_source",
    "resolve",
]


@dataclass(frozen=True)
class IOKind:
    """One registered kind of source or sink.

    ``schemes`` match ``scheme://...``; ``suffixes`` match a path's suffix (before any
    ``?query``); ``probe`` (``"module:attr"``, ``path -> bool``) matches folders by content,
    e.g. a rosbag2 folder holding ``metadata.yaml``. ``opener`` builds the source or sink.
    """

    kind: str
    opener: str
    schemes: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()
    probe: str | None = None
    live: bool = False
    help: str = ""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        return resolve(self.opener)(*args, **kwargs)


SOURCES: dict[str, IOKind] = {}
SINKS: dict[str, IOKind] = {}


def resolve(ref: str) -> Callable[..., Any]:
    """``"package.module:attr"`` -> the attribute (imported now, not when registered)."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


def register_source(entry: IOKind) -> IOKind:
    SOURCES[entry.kind] = entry
    return entry


def register_sink(entry: IOKind) -> IOKind:
    SINKS[entry.kind] = entry
    return entry


def _split(uri: str) -> tuple[str, str]:
    """(scheme or '', path without ?query)."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    path = uri.split("://", 1)[1] if scheme else uri
    return scheme, path.split("?", 1)[0]


def _match(table: dict[str, IOKind], uri: str) -> IOKind | None:
    scheme, path = _split(uri.strip())
    for entry in table.values():
        if scheme and scheme in entry.schemes:
            return entry
    if scheme:
        return None
    suffix = Path(path.rstrip("/\\")).suffix.lower()
    for entry in table.values():
        if suffix and suffix in entry.suffixes:
            return entry
    for entry in table.values():
        if entry.probe is not None and resolve(entry.probe)(path):
            return entry
    return None


def match_source(uri: str) -> IOKind | None:
    """The registered (non built-in) source kind of a ``--source``, or None."""
    return _match(SOURCES, uri)


def match_sink(uri: str) -> IOKind | None:
    """The registered (non built-in) sink kind of a ``--sink``, or None."""
    return _match(SINKS, uri)


# -- registered kinds (openers named as strings: nothing here imports them) ---------------------
register_sink(IOKind(
    "web", "edgeseg.web.sink:open_registered", schemes=("http", "https"), live=True,
    help="http://HOST:PORT[/path]: live page (MJPEG + stats); @ = all interfaces, no host = "
         "127.0.0.1"))
register_sink(IOKind(
    "webrtc", "edgeseg.web.sink:open_registered", schemes=("webrtc",), live=True,
    help="webrtc://HOST:PORT/name: the live page with a WebRTC (VP8) video"))
# ROS bags through rosbags, no ROS needed (edgeseg/ros/bag.py, bag_sink.py).
register_source(IOKind(
    "rosbag", "edgeseg.ros.bag:open_bag_capture", schemes=("rosbag2",),
    suffixes=(".mcap", ".db3", ".bag"), probe="edgeseg.ros.probe:is_rosbag2_folder",
    help="ROS 2 bag folder, .mcap / .db3 file or ROS 1 .bag: ?topic=/camera/image_raw&start=SEC&end=SEC",
))
register_sink(IOKind(
    "rosbag", "edgeseg.ros.bag_sink:open_bag_sink", schemes=("rosbag2",), suffixes=(".mcap",),
    probe="edgeseg.ros.probe:is_rosbag2_sink",
    help="out.mcap or rosbag2:DIR[?storage=sqlite3]: the ROS 2 node's topics "
         "(&ns=&outputs=&alpha=&class_ids=&distro=humble|jazzy&partial=keep)",
))
