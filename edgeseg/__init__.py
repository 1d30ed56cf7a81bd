"""edgeseg: DESANet real-time semantic segmentation from training to a Jetson camera.

The Python API is one function per command, imported on first use so that ``import edgeseg``
stays as light as ``edgeseg --help`` (no torch, onnxruntime or OpenCV)::

    import edgeseg
    result = edgeseg.train(edgeseg.load_train_config(None, recipe="cpu-quick", data=..., out=...))
    report = edgeseg.export("model.onnx", weights=result.checkpoint)
    seg = edgeseg.open_segmenter("model.onnx")
    summary = edgeseg.run(seg, "video.mp4", "out.mp4")
"""

from __future__ import annotations

import importlib
from typing import Any

from edgeseg.errors import EdgesegError

__version__ = "0.1.0"

# public name -> module that defines it (PEP 562 lazy attributes)
_API = {
    "train": "edgeseg.train",  # a callable package, see edgeseg/_callable.py
    "load_train_config": "edgeseg.train.config",
    "evaluate": "edgeseg.train.evaluate",
    "export": "edgeseg.deploy.export",
    "calibrate": "edgeseg.deploy.quantize",
    "bench": "edgeseg.bench",  # likewise
    "tune": "edgeseg.tune",  # likewise
    "run": "edgeseg.io",  # the composition root: web and ROS kinds registered
    "open_segmenter": "edgeseg.runtime",
    "load_segmenter": "edgeseg.io",
}

__all__ = ["EdgesegError", "__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        module = importlib.import_module(_API[name])
        value = module if module.__name__ == f"edgeseg.{name}" else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edgeseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
