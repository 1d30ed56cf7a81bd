"""Cheap matchers for the source/sink registry (no imports beyond pathlib): a ``--source`` or
``--sink`` that is no known kind is probed against these on every run."""

from __future__ import annotations

from pathlib import Path


def is_rosbag2_folder(path: str) -> bool:
    """``rosbag2:DIR`` or a folder holding a rosbag2 ``metadata.yaml``."""
    return path.startswith("rosbag2:") or (Path(path) / "metadata.yaml").is_file()


def is_rosbag2_sink(path: str) -> bool:
    """``rosbag2:DIR``: a rosbag2 folder to write."""
    return path.startswith("rosbag2:")
