"""One frame as it travels from a source to the sinks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Frame"]


@dataclass
class Frame:
    """One frame: ``index`` counts frames read (gaps = dropped), ``name`` names outputs."""

    index: int
    image: np.ndarray
    name: str
    batch: np.ndarray | None = None  # pre-processed on the reader thread (files only)
    read_ms: float = 0.0
    prep_ms: float = 0.0
    stamp_ns: int | None = None  # capture time, where the source knows it (bags, ROS topics)
    frame_id: str = ""  # the camera's coordinate frame (ROS header.frame_id), where known
