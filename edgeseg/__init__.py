"""edgeseg: DESANet real-time semantic segmentation from training to a Jetson camera.

Kept import-light: `edgeseg --help` must not pay for torch, onnxruntime or OpenCV.
"""

__version__ = "0.1.0"

from edgeseg.errors import EdgesegError

__all__ = ["EdgesegError", "__version__"]
