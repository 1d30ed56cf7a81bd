"""The export formats, as one table (Ultralytics' export table is the model).

Each :class:`ExportFormat` row says what a format writes, which precisions it takes, what it
needs installed (and how to get it) and which function builds it. ``edgeseg export`` validates a
request against the row before loading a model, and ``edgeseg export --formats`` prints the table
with what this machine can build now. A new format is a new row here and a builder function
elsewhere in :mod:`edgeseg.deploy`, not a new branch in the command.

Builders are named as ``"module:function"`` strings so reading the table imports nothing heavy.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgeseg.deploy.export_settings import OPTIONS, ExportSettings, given_options
from edgeseg.errors import EdgesegError, MissingDependencyError

__all__ = ["FORMATS", "ExportFormat", "Requirement", "availability", "get_format"]


@dataclass(frozen=True)
class Requirement:
    """One thing a format needs: a ``check`` returning ``(ok, reason)``, and the install hint."""

    name: str
    check: str  # "module:function" -> (ok: bool, reason: str)
    install: str
    image: str | None = None

    def status(self) -> tuple[bool, str]:
        ok, reason = _resolve(self.check)()
        return bool(ok), str(reason)

    def require(self) -> None:
        ok, _reason = self.status()
        if not ok:
            raise MissingDependencyError(self.name, self.install, image=self.image)


@dataclass(frozen=True)
class ExportFormat:
    """One row of the export table."""

    name: str
    description: str
    suffixes: tuple[str, ...]  # file suffixes written; () for a folder layout
    layout: str  # what lands on disk, in words
    precisions: tuple[str, ...]
    requires: tuple[Requirement, ...]
    builder: str  # "module:function"; (model, meta, out, ExportSettings, step) -> report
    options: tuple[str, ...] = ()  # the format-specific options it takes (export_settings.OPTIONS)
    models: tuple[str, ...] = ("checkpoint", "variant")  # --model kinds it builds from
    precision_hint: str = ""  # said when a precision is refused

    @property
    def is_folder(self) -> bool:
        return not self.suffixes

    def build(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return _resolve(self.builder)(*args, **kwargs)

    def check_precision(self, precision: str) -> None:
        if precision not in self.precisions:
            hint = f" ({self.precision_hint})" if self.precision_hint else ""
            raise EdgesegError(
                f"--format {self.name} supports --precision {', '.join(self.precisions)}, "
                f"not {precision}{hint}"
            )

    def check_options(self, settings: ExportSettings) -> None:
        """One line naming the first option this format would ignore, and the formats that
        use it: a flag that does nothing here is an error, not silence."""
        for name in given_options(settings):
            if name in self.options:
                continue
            opt = OPTIONS[name]
            takers = " or ".join(f.name for f in FORMATS.values() if name in f.options)
            hint = f" ({opt.hint})" if opt.hint else ""
            raise EdgesegError(f"{opt.flag} goes with --format {takers}, not {self.name}{hint}")

    def missing(self) -> list[tuple[Requirement, str]]:
        """The requirements this machine lacks, each with the reason."""
        out = []
        for req in self.requires:
            ok, reason = req.status()
            if not ok:
                out.append((req, reason))
        return out


def _resolve(ref: str) -> Callable[..., Any]:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


_DOCKER = "edgeseg:jetson (docker/Dockerfile.jetson) or edgeseg:gpu"
TENSORRT = Requirement(
    "TensorRT", "edgeseg.deploy.formats:_tensorrt_status",
    "pip install tensorrt (x86, NVIDIA index) or use JetPack on Jetson", _DOCKER,
)
CUDA = Requirement(
    "A CUDA GPU", "edgeseg.deploy.formats:_cuda_status",
    "engines are built on the GPU that runs them (check drivers; docker --runtime nvidia)",
    _DOCKER,
)
TORCH2TRT = Requirement(
    "torch2trt", "edgeseg.deploy.formats:_torch2trt_status",
    "build it from github.com/NVIDIA-AI-IOT/torch2trt (pip install --no-build-isolation .)",
    _DOCKER,
)
ONNX = Requirement("onnx + onnxruntime", "edgeseg.deploy.formats:_onnx_status",
                   "pip install onnx onnxruntime onnxscript")

FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat(
            "onnx", "ONNX (native DeformConv or portable GridSample + Conv), parity-checked",
            (".onnx",), "one .onnx file with edgeseg metadata_props", ("fp32", "fp16"),
            (ONNX,), "edgeseg.deploy.export:to_onnx",
            options=("normalize_in_graph", "dynamic", "argmax"),
            precision_hint="an INT8 Q/DQ ONNX is written by `edgeseg calibrate`",
        ),
        ExportFormat(
            "engine", "TensorRT engine through TensorRT's ONNX parser",
            (".engine", ".plan", ".trt"), "engine + .engine.json sidecar (+ the .onnx beside it)",
            ("fp32", "fp16", "int8"), (ONNX, TENSORRT, CUDA), "edgeseg.deploy.export:to_engine",
            options=("dynamic", "argmax", "images", "calibration_cache", "num_images"),
            models=("checkpoint", "variant", "onnx"),
        ),
        ExportFormat(
            "torch2trt", "TensorRT engine through torch2trt and edgeseg's deformable-conv converter",
            (".engine", ".plan", ".trt"), "engine + .engine.json sidecar",
            ("fp32", "fp16", "int8"), (TENSORRT, CUDA, TORCH2TRT),
            "edgeseg.deploy.export:to_torch2trt", options=("images", "num_images"),
        ),
        ExportFormat(
            "triton", "Triton Inference Server model repository (ONNX, batch dimension dynamic)",
            (), "REPO/<name>/config.pbtxt + labels.txt + 1/model.onnx (1/model.py: Python "
            "backend); --triton-pipeline adds pre/post models and an ensemble",
            ("fp32", "fp16"), (ONNX,), "edgeseg.deploy.triton:build_triton",
            options=("argmax", "triton_pipeline", "triton_form", "triton_name", "max_batch_size"),
        ),
        ExportFormat(
            "deepstream", "DeepStream nvinfer (network-type 2) + deepstream-app with nvsegvisual",
            (), "DIR/model.onnx (mean/std in the graph, 0..255 RGB in) + nvinfer config + "
            "labels.txt + deepstream-app config", ("fp32", "fp16"), (ONNX,),
            "edgeseg.deploy.deepstream:build_deepstream",
            options=("sources", "plugin_lib", "segmentation_threshold"),
        ),
    )
}


def get_format(name: str) -> ExportFormat:
    if name not in FORMATS:
        raise EdgesegError(f"--format: expected one of {', '.join(FORMATS)}, got '{name}'")
    return FORMATS[name]


def availability() -> list[dict[str, Any]]:
    """Every format with whether this machine can build it now (and why not)."""
    rows = []
    for f in FORMATS.values():
        missing = f.missing()
        rows.append({
            "format": f.name,
            "description": f.description,
            "writes": ", ".join(f.suffixes) if f.suffixes else "folder",
            "layout": f.layout,
            "precisions": list(f.precisions),
            "requires": [r.name for r in f.requires],
            "available": not missing,
            "missing": [{"name": r.name, "reason": why, "install": r.install} for r, why in missing],
        })
    return rows


# ---------------------------------------------------------------------------------------------
# Requirement checks: (ok, reason). Each imports what it probes, so the table itself is light.


def _onnx_status() -> tuple[bool, str]:
    import importlib.util

    absent = [m for m in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(m) is None]
    return (not absent, f"not installed: {', '.join(absent)}" if absent else "installed")


def _tensorrt_status() -> tuple[bool, str]:
    from edgeseg.deploy.tensorrt import tensorrt_available

    if tensorrt_available():
        import tensorrt

        return True, f"TensorRT {tensorrt.__version__}"
    return False, "the tensorrt Python bindings do not import"


def _cuda_status() -> tuple[bool, str]:
    import torch

    if torch.cuda.is_available():
        return True, torch.cuda.get_device_name(0)
    return False, "torch sees no CUDA device" if torch.version.cuda else "this torch has no CUDA"


def _torch2trt_status() -> tuple[bool, str]:
    from edgeseg.deploy.torch2trt_converters import torch2trt_available

    return (True, "importable") if torch2trt_available() else (False, "torch2trt does not import")
