"""The ROS package's entries in the source/sink registry (:mod:`edgeseg.video.registry`): ROS
bags through rosbags, no ROS needed (:mod:`edgeseg.ros.bag`).

The registry lives in video/, below this package, and names nothing above it; :func:`register`
adds the bag source and sink. It is called once by the composition root (:mod:`edgeseg.io`).
Importing this module is light: openers and folder probes are named as strings of this
package's own modules, imported when a spec is matched or opened.
"""

from __future__ import annotations

from edgeseg.video.registry import IOKind, register_sink, register_source

__all__ = ["SINK", "SOURCE", "register"]

SOURCE = IOKind(
    "rosbag", "edgeseg.ros.bag:open_bag_capture", schemes=("rosbag2",),
    suffixes=(".mcap", ".db3", ".bag"), probe="edgeseg.ros.probe:is_rosbag2_folder",
    help="ROS 2 bag folder, .mcap / .db3 file or ROS 1 .bag: ?topic=/camera/image_raw&start=SEC&end=SEC",
)
SINK = IOKind(
    "rosbag", "edgeseg.ros.bag_sink:open_bag_sink", schemes=("rosbag2",), suffixes=(".mcap",),
    probe="edgeseg.ros.probe:is_rosbag2_sink",
    help="out.mcap or rosbag2:DIR[?storage=sqlite3]: the ROS 2 node's topics "
         "(&ns=&outputs=&alpha=&class_ids=&distro=humble|jazzy&partial=keep)",
)


def register() -> None:
    """Add the bag source and sink to the registry (again is harmless: keyed by kind)."""
    register_source(SOURCE)
    register_sink(SINK)
