"""One registry of frame sources and result sinks, keyed by URI scheme or file suffix.

jetson-inference's ``videoSource.Create(uri)`` / ``videoOutput.Create(uri)`` are the model: a
``--source`` or ``--sink`` string is matched against the entries here, and the matching entry
names the function that opens it. Built-in kinds (cameras, CSI, RTSP, video files, windows,
mask folders) are parsed by :mod:`edgeseg.video.sources` / :mod:`edgeseg.video.sinks`; every other
kind (web page, WebRTC, ROS bags, ...) is one entry that its own package describes
(``edgeseg/web/kinds.py``, ``edgeseg/ros/kinds.py``) and the composition root
:mod:`edgeseg.io` registers. Nothing here names a package above video/: the table starts
empty, so video/ never imports upwards, not even through a string.

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
