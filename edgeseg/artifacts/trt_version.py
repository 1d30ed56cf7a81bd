"""TensorRT facts that need no TensorRT: release numbers, what each release can do, tensor types.

The engine sidecar records the TensorRT release that built an engine and the runtime reads an
engine's tensor types and execution API; all live here so neither has to import the builder
logic in
:mod:`edgeseg.deploy.trt_compat`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgeseg.errors import EdgesegError

__all__ = ["LEGACY_NAMES", "TrtFeatures", "TrtVersion", "parse_trt_version", "trt_dtype_to_numpy"]

# TensorRT names that the vendored 10.13 stubs (typings/) do not have, each with the releases
# that have it. Code reaches them only through ``edgeseg.runtime.trt_engine.legacy(obj, name)``;
# every other TensorRT name is checked by mypy against the stubs.
LEGACY_NAMES = {
    "max_workspace_size": "IBuilderConfig / torch2trt, TensorRT < 10 (10 has memory pools)",
    "num_bindings": "ICudaEngine, TensorRT < 10 (10 names I/O tensors)",
}


@dataclass(frozen=True, order=True)
class TrtVersion:
    """A TensorRT version; orders like a tuple (major, minor, patch, build)."""

    major: int
    minor: int
    patch: int = 0
    build: int = 0

    @classmethod
    def parse(cls, text: str | TrtVersion) -> TrtVersion:
        return parse_trt_version(text)

    @classmethod
    def from_cache_tag(cls, tag: int) -> TrtVersion:
        """Invert :attr:`cache_tag` (``8601`` -> 8.6.1, ``100300`` -> 10.3.0)."""
        if tag >= 100000:
            return cls(tag // 10000, tag % 10000 // 100, tag % 100)
        return cls(tag // 1000, tag % 1000 // 100, tag % 100)

    @property
    def cache_tag(self) -> int:
        """The number TensorRT writes in headers (NV_TENSORRT_VERSION): TRT-8601, TRT-100300."""
        if self.major >= 10:
            return self.major * 10000 + self.minor * 100 + self.patch
        return self.major * 1000 + self.minor * 100 + self.patch

    @property
    def short(self) -> str:
        return f"{self.major}.{self.minor}"

    def at_least(self, major: int, minor: int = 0, patch: int = 0) -> bool:
        return (self.major, self.minor, self.patch) >= (major, minor, patch)

    def same_release(self, other: TrtVersion) -> bool:
        """Engines are only portable within one major.minor.patch release."""
        return (self.major, self.minor, self.patch) == (other.major, other.minor, other.patch)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


_VERSION_RE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def parse_trt_version(text: str | TrtVersion) -> TrtVersion:
    """``'10.3.0.30'``, ``'8.6.2'``, ``'10.13'``, ``'TensorRT 10.13.0.35'`` -> TrtVersion."""
    if isinstance(text, TrtVersion):
        return text
    m = _VERSION_RE.search(str(text))
    if not m:
        raise EdgesegError(f"not a TensorRT version: {text!r} (expected e.g. 10.3.0)")
    parts = [int(p) if p is not None else 0 for p in m.groups()]
    return TrtVersion(*parts)


_TRT_TO_NUMPY = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
}


def trt_dtype_to_numpy(name: str) -> str:
    """``'DataType.HALF'`` or ``'HALF'`` -> ``'float16'`` (also a valid torch dtype name)."""
    key = str(name).rsplit(".", 1)[-1].upper()
    if key not in _TRT_TO_NUMPY:
        raise EdgesegError(f"engine tensor type {name} is not supported by edgeseg")
    return _TRT_TO_NUMPY[key]


@dataclass(frozen=True)
class TrtFeatures:
    """Feature table of one TensorRT release. Raises EdgesegError for releases before 8.6."""

    version: TrtVersion

    def __init__(self, version: str | TrtVersion) -> None:
        v = parse_trt_version(version)
        if not v.at_least(8, 6):
            raise EdgesegError(
                f"TensorRT {v} is too old: edgeseg needs 8.6 or newer (JetPack 6), which ships "
                "the ModulatedDeformConv2d plugin"
            )
        object.__setattr__(self, "version", v)

    @property
    def onnx_parser_imports_deformconv(self) -> bool:
        """The ONNX parser maps DeformConv onto the ModulatedDeformConv2d plugin (10.1+)."""
        return self.version.at_least(10, 1)

    @property
    def needs_portable_dcn(self) -> bool:
        """Export the deformable conv as grid_sample + convs, because the parser can't import it."""
        return not self.onnx_parser_imports_deformconv

    @property
    def implicit_int8_deprecated(self) -> bool:
        return self.version.at_least(10, 1)

    @property
    def strongly_typed_only(self) -> bool:
        """No FP16/INT8 builder flags, no int8_calibrator: types come from the network (11+)."""
        return self.version.major >= 11

    @property
    def explicit_batch_flag(self) -> bool:
        """``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` must be set (before 10.0)."""
        return self.version.major < 10

    @property
    def tensor_address_execution(self) -> bool:
        """Run with set_tensor_address + execute_async_v3 (10+); 8.6 uses execute_v2 bindings."""
        return self.version.major >= 10

    @property
    def has_dla(self) -> bool:
        """DLA support (builder DLA_core, DeviceType.DLA, can_run_on_DLA): every supported
        release, TensorRT 11's bindings included."""
        return True

    @property
    def progress_monitor(self) -> bool:
        return self.version.major >= 10

    @property
    def modulated_deform_plugin_version(self) -> str:
        """Preferred plugin version: "2" (IPluginV3) from 10.11, else "1" (IPluginV2DynamicExt)."""
        return "2" if self.version.at_least(10, 11) else "1"

    @property
    def modulated_deform_plugin_versions(self) -> tuple[str, ...]:
        """Versions to try, preferred first (v1 stays registered while it is only deprecated)."""
        return ("2", "1") if self.version.at_least(10, 11) else ("1",)
