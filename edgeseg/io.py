"""The composition root of frame sources and sinks: video/ plus the packages that add kinds.

:mod:`edgeseg.video.registry` is the table; video/ fills in only its built-in kinds and names
no package above or beside it. The web sinks (:mod:`edgeseg.web.kinds`) and the ROS bag
source and sink (:mod:`edgeseg.ros.kinds`) are registered here, one layer above all three, on
import. ``edgeseg run``, ``edgeseg.run`` and ``edgeseg.load_segmenter`` come through this
module; a Python user calling :mod:`edgeseg.video` directly with a bag or ``http://`` spec
imports this module (or calls :func:`register_all`) first.
"""

from __future__ import annotations

from edgeseg.ros import kinds as ros_kinds
from edgeseg.video.run import load_segmenter, run
from edgeseg.web import kinds as web_kinds

__all__ = ["load_segmenter", "register_all", "run"]


def register_all() -> None:
    """Register every kind of source and sink edgeseg ships beyond video/'s built-ins."""
    web_kinds.register()
    ros_kinds.register()


register_all()
