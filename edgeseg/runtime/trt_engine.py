"""Loading TensorRT engines (the runtime half; building is :mod:`edgeseg.deploy.tensorrt`).

:func:`load_engine` reads the engine's sidecar, refuses an engine built for another GPU or
TensorRT release with one line, and deserializes it; the TensorRT bindings are imported only
when called, with an install hint when they are missing.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from edgeseg.artifacts.sidecar import EngineSidecar, check_sidecar
from edgeseg.artifacts.trt_version import TrtFeatures, TrtVersion, parse_trt_version
from edgeseg.errors import EdgesegError, MissingDependencyError

if TYPE_CHECKING:
    import tensorrt as trt_t

__all__ = [
    "LoadedEngine",
    "current_gpu",
    "load_engine",
    "require_tensorrt",
    "tensorrt_available",
    "tensorrt_version",
]

INSTALL_HINT = "pip install tensorrt (x86, NVIDIA index) or use JetPack on Jetson"
DOCKER_HINT = "edgeseg:jetson (docker/Dockerfile.jetson) or edgeseg:gpu"


def tensorrt_available() -> bool:
    """True when the real TensorRT bindings import.

    ``tensorrt-stubs`` installs a ``tensorrt/`` folder with only ``.pyi`` files, which Python
    imports as an empty namespace package, so a successful ``import tensorrt`` proves nothing.
    """
    try:
        import tensorrt
    except (ImportError, OSError, RuntimeError):  # absent, or libnvinfer missing/broken
        return False
    return hasattr(tensorrt, "Builder") and hasattr(tensorrt, "__version__")


def require_tensorrt() -> ModuleType:
    """Import TensorRT or raise MissingDependencyError with how to get it."""
    if not tensorrt_available():
        raise MissingDependencyError("TensorRT", INSTALL_HINT, image=DOCKER_HINT)
    import tensorrt

    return tensorrt


def tensorrt_version() -> TrtVersion:
    return parse_trt_version(require_tensorrt().__version__)


def current_gpu(device: int = 0) -> tuple[str, str]:
    """(name, compute capability ``'8.7'``) of the CUDA device TensorRT will use."""
    import torch

    if not torch.cuda.is_available():
        raise MissingDependencyError(
            "A CUDA GPU",
            "TensorRT engines need one visible to torch (check drivers and "
            "--runtime nvidia / --gpus all for docker)",
            image=DOCKER_HINT,
        )
    major, minor = torch.cuda.get_device_capability(device)
    return torch.cuda.get_device_name(device), f"{major}.{minor}"


def _make_logger(trt: Any, verbose: bool = False) -> Any:
    """A logger that prints warnings and keeps the last error for one-line messages."""

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity <= trt.ILogger.Severity.ERROR:
                self.errors.append(" ".join(msg.split()))
            if verbose or severity <= trt.ILogger.Severity.WARNING:
                print(f"[TensorRT] {msg}", file=sys.stderr)

    return _Logger()


@dataclass
class LoadedEngine:
    """A deserialized engine with what keeps it alive (runtime, logger) and its sidecar."""

    engine: trt_t.ICudaEngine
    sidecar: EngineSidecar
    runtime: trt_t.Runtime
    logger: Any
    features: TrtFeatures


def load_engine(path: str | Path, *, check: bool = True) -> LoadedEngine:
    """Read the sidecar, refuse a foreign engine (``check``), then deserialize it."""
    path = Path(path)
    if not path.is_file():
        raise EdgesegError(f"engine not found: {path}")
    sidecar = EngineSidecar.read(path)
    require_tensorrt()
    import tensorrt as trt

    if check:
        gpu_name, cc = current_gpu()
        check_sidecar(sidecar, gpu_name, cc, trt.__version__)
    logger = _make_logger(trt)
    trt.init_libnvinfer_plugins(logger, "")
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        last = logger.errors[-1] if logger.errors else "see the TensorRT log above"
        raise EdgesegError(f"TensorRT could not load {path}: {last}")
    return LoadedEngine(engine, sidecar, runtime, logger, TrtFeatures(trt.__version__))
