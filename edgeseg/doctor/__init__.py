"""`edgeseg doctor`: what this machine can do for edgeseg, and how to fix what it cannot.

Two halves, so the judgement is testable on fixture files:

* :func:`gather` collects :class:`Facts`: files under a root folder (``/etc/nv_tegra_release``,
  ``/proc/device-tree/model`` and ``compatible``, ``/etc/nvpmodel.conf``,
  ``/var/lib/nvpmodel/status``, CPU frequency limits, the jtop socket) and what the Python
  packages say (torch and its CUDA arch list, TensorRT and the ModulatedDeformConv2d plugin,
  torch2trt, OpenCV's GStreamer support, onnxruntime's providers). A test passes a fake root and
  a :class:`PythonFacts` of its own.
* :func:`evaluate` turns Facts into :class:`Check` rows, each OK / WARN / FAIL with a one-line
  fix; rows that make no sense on this machine (jtop on an x86 box) are left out.

The board comes from :func:`edgeseg.profiles.detection.detect`, the same logic that picks the
profile, pointed at the same root.
"""

from edgeseg.doctor.checks import FAIL, MIN_TORCH2TRT, OK, WARN, Check, doctor, evaluate
from edgeseg.doctor.facts import (
    JETPACK_OF_L4T,
    Facts,
    PythonFacts,
    gather,
    gather_python,
    jetpack_of,
    parse_l4t,
)

__all__ = [
    "FAIL",
    "JETPACK_OF_L4T",
    "MIN_TORCH2TRT",
    "OK",
    "WARN",
    "Check",
    "Facts",
    "PythonFacts",
    "doctor",
    "evaluate",
    "gather",
    "gather_python",
    "jetpack_of",
    "parse_l4t",
]
