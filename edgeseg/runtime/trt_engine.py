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

from edgeseg.artifacts.sidecar import EngineSidecar, check_dla, check_sidecar
from edgeseg.artifacts.trt_version import LEGACY_NAMES, TrtFeatures, TrtVersion, parse_trt_version
from edgeseg.errors import EdgesegError, MissingDependencyError

if TYPE_CHECKING:
    import tensorrt as trt_t

__all__ = [
    "LoadedEngine",
    "current_gpu",
    "init_plugins",
    "legacy",
    "load_engine",
    "process_logger",
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



_process: dict[str, Any] = {"logger": None, "plugins": False}


def process_logger(trt: Any, verbose: bool = False) -> Any:
    """The one TensorRT logger of this process (created on first use, never freed).

    ``init_libnvinfer_plugins(logger, "")`` keeps a raw pointer to its logger, so a temporary
    logger (a function's local, torch2trt's ``ctx.logger``) would leave the plugin library a
    dangling pointer. Every builder, runtime, parser and plugin registration here uses this one.
    It prints warnings (everything with ``verbose``) and keeps errors for one-line messages.
    """
    logger = _process["logger"]
    if logger is None:

        class _Logger(trt.ILogger):  # type: ignore[misc]
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: list[str] = []
                self.verbose = False

            def log(self, severity: Any, msg: str) -> None:
                if severity <= trt.ILogger.Severity.ERROR:
                    self.errors.append(" ".join(msg.split()))
                    del self.errors[:-50]  # bounded: only the last ones are ever shown
                if self.verbose or severity <= trt.ILogger.Severity.WARNING:
                    print(f"[TensorRT] {msg}", file=sys.stderr)

        logger = _process["logger"] = _Logger()
    logger.verbose = verbose
    return logger


def init_plugins(trt: Any) -> Any:
    """Register libnvinfer_plugin's creators once, with :func:`process_logger`; returns it."""
    logger = process_logger(trt, getattr(_process["logger"], "verbose", False))
    if not _process["plugins"]:
        trt.init_libnvinfer_plugins(logger, "")
        _process["plugins"] = True
    return logger


def legacy(obj: Any, name: str) -> Any:
    """``obj.name`` for a TensorRT name the 10.13 stubs lack (older releases only).

    The one way edgeseg code touches such names, so that mypy checks everything else against
    the stubs; ``name`` must be listed in :data:`~edgeseg.artifacts.trt_version.LEGACY_NAMES`.
    """
    if name not in LEGACY_NAMES:
        raise ValueError(f"{name!r} is not in trt_compat.LEGACY_NAMES")
    return getattr(obj, name)


def _last_error(logger: Any, since: int) -> str:
    errors = logger.errors[since:] if since < len(logger.errors) else []
    return errors[-1] if errors else "see the TensorRT log above"


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

    gpu_name = ""
    if check:
        gpu_name, cc = current_gpu()
        check_sidecar(sidecar, gpu_name, cc, trt.__version__)
    logger = process_logger(trt)
    init_plugins(trt)
    mark = len(logger.errors)
    runtime = trt.Runtime(logger)
    if sidecar.dla_core is not None:
        # A DLA engine deserializes only with the runtime on the core it was built for.
        check_dla(sidecar, int(runtime.num_DLA_cores), gpu_name or "this device")
        runtime.DLA_core = int(sidecar.dla_core)
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise EdgesegError(f"TensorRT could not load {path}: {_last_error(logger, mark)}")
    return LoadedEngine(engine, sidecar, runtime, logger, TrtFeatures(trt.__version__))
