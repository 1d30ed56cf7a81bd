"""One inference interface for every backend; :func:`open_segmenter` opens any artifact.

The artifact's type picks the backend: a ``.pt`` checkpoint runs in PyTorch, an ``.onnx`` in
onnxruntime, an ``.engine`` in TensorRT. Backends are looked up in :data:`BACKENDS`; each entry
names the artifact kind it reads and a loader that imports its heavy dependencies only when
called, so importing this package stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError, MissingDependencyError
from edgeseg.runtime.base import ModelMeta, Segmenter

__all__ = ["BACKENDS", "Backend", "ModelMeta", "Segmenter", "open_segmenter"]


def _open_torch(path: Path, **opts: Any) -> Segmenter:
    from edgeseg.runtime.torch_backend import TorchSegmenter

    return TorchSegmenter.from_checkpoint(path, **opts)


def _open_onnxruntime(path: Path, **opts: Any) -> Segmenter:
    from edgeseg.runtime.onnxruntime_backend import OnnxRuntimeSegmenter

    return OnnxRuntimeSegmenter(path, **opts)


def _open_tensorrt(path: Path, **opts: Any) -> Segmenter:
    try:
        from edgeseg.runtime.tensorrt_backend import TensorRTSegmenter
    except ImportError as e:
        raise MissingDependencyError(
            f"The TensorRT backend ({e.name or e})", "pip install tensorrt or use JetPack"
        ) from None
    return TensorRTSegmenter(path, **opts)


@dataclass(frozen=True)
class Backend:
    """A runtime backend: the artifact kind it reads and how to open one."""

    name: str
    artifact: str  # "checkpoint", "onnx" or "engine" (edgeseg.artifacts.files.artifact_kind)
    open: Callable[..., Segmenter]


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("torch", "checkpoint", _open_torch),
        Backend("onnxruntime", "onnx", _open_onnxruntime),
        Backend("tensorrt", "engine", _open_tensorrt),
    )
}


def open_segmenter(path_or_ckpt: str | Path, backend: str | None = None, **opts: Any) -> Segmenter:
    """Open a checkpoint, ONNX or engine as a :class:`Segmenter`.

    Args:
        path_or_ckpt: ``.pt``/``.pth`` checkpoint, ``.onnx`` or ``.engine`` file.
        backend: ``torch``, ``onnxruntime`` or ``tensorrt``; default: the one for the file type.
            A backend that cannot read the file type is refused with the right command to
            convert it.
        opts: backend options, e.g. ``device``, ``channels_last``, ``fp16`` (torch),
            ``threads``, ``providers`` (onnxruntime), ``input_hw`` (torch, dynamic ONNX).
    """
    from edgeseg.artifacts.files import artifact_kind

    path = Path(path_or_ckpt)
    kind = artifact_kind(path)
    if not path.is_file():
        raise EdgesegError(f"{kind} not found: {path}")
    if backend is None:
        chosen = next(b for b in BACKENDS.values() if b.artifact == kind)
    elif backend not in BACKENDS:
        raise EdgesegError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    else:
        chosen = BACKENDS[backend]
        if chosen.artifact != kind:
            raise EdgesegError(
                f"backend {backend} runs {chosen.artifact} files, not {path.name} ({kind}): "
                f"convert it with `edgeseg export` or pick backend "
                f"{next(b.name for b in BACKENDS.values() if b.artifact == kind)}"
            )
    try:
        return chosen.open(path, **opts)
    except TypeError as e:  # an option this backend does not take
        if "unexpected keyword" not in str(e):
            raise
        raise EdgesegError(f"backend {chosen.name}: {e}") from None
