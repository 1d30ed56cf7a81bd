"""What each TensorRT release can do, as plain data and pure functions (no tensorrt import).

Everything version-dependent in the TensorRT code paths is decided here, so it can be tested on a
machine without TensorRT and the thin TensorRT modules (``tensorrt.py``,
``torch2trt_converters.py``, ``runtime/tensorrt_backend.py``) never compare version numbers
themselves.

Releases handled:

* **8.6** (JetPack 6.0): networks need ``EXPLICIT_BATCH``; the ONNX parser has no ``DeformConv``
  importer, so the model must be exported with the portable deformable conv (grid_sample + 1x1
  convs); implicit INT8 via an entropy calibrator; execution by bindings (``execute_v2``).
* **10.0 - 10.x** (JetPack 6.1/6.2 ship 10.3; x86 wheels to 10.13): explicit batch is the only
  mode; from 10.1 the parser imports ONNX ``DeformConv`` onto the ``ModulatedDeformConv2d``
  plugin and implicit INT8 calibration is deprecated (still works); from 10.11 the plugin has an
  IPluginV3 version "2" (version "1" deprecated); execution by tensor address
  (``set_tensor_address`` + ``execute_async_v3``).
* **11+**: strongly typed networks only: no ``BuilderFlag.FP16``/``INT8``, no ``int8_calibrator``.
  FP16 comes from an ONNX whose tensors are already fp16; INT8 only from Q/DQ nodes
  (``edgeseg calibrate`` writes such an ONNX).
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeseg.artifacts.trt_version import (
    LEGACY_NAMES,
    TrtFeatures,
    TrtVersion,
    parse_trt_version,
    trt_dtype_to_numpy,
)
from edgeseg.errors import EdgesegError
from edgeseg.precision import PRECISIONS

__all__ = [
    "LEGACY_NAMES",
    "MODULATED_DEFORM_PLUGIN",
    "OFFSET_LAYOUT",
    "PRECISIONS",
    "BuildPlan",
    "CalibrationCache",
    "TrtFeatures",
    "TrtVersion",
    "check_offset_layout",
    "dcnv1_mask_shape",
    "format_calibration_cache",
    "modulated_deform_fields",
    "parity_tolerance",
    "parse_calibration_cache",
    "parse_trt_version",
    "plan_build",
    "read_calibration_cache",
    "scale_from_hex",
    "scale_to_hex",
    "trt_dtype_to_numpy",
    "write_calibration_cache",
]

MODULATED_DEFORM_PLUGIN = "ModulatedDeformConv2d"

CALIBRATION_ALGORITHM = "EntropyCalibration2"

# The offset layout of torchvision.ops.deform_conv2d, of ONNX DeformConv and of TensorRT's
# ModulatedDeformConv2d plugin is the same, so offsets pass through untouched:
# offset has 2 * deformable_group * kh * kw channels; for deformable group g and kernel tap t
# (row-major over the kh x kw window, t = i * kw + j) channel g*2*kh*kw + 2*t is the row (y, h)
# shift and channel g*2*kh*kw + 2*t + 1 the column (x, w) shift, in input pixels.
# (Plugin: modulatedDeformableIm2colGpuKernel reads dataOffsetHPtr = 2*(i*kW+j),
#  dataOffsetWPtr = 2*(i*kW+j)+1 after a per-group base of 2*kH*kW channels.)
OFFSET_LAYOUT = "(dy, dx) pairs per kernel tap, taps row-major, grouped by deformable group"


# ---------------------------------------------------------------------------------------------
# Versions


# ---------------------------------------------------------------------------------------------
# Build plan


@dataclass(frozen=True)
class BuildPlan:
    """Everything the engine builder sets, decided from the TensorRT version alone.

    ``builder_flags`` and ``network_flags`` are member names of ``trt.BuilderFlag`` and
    ``trt.NetworkDefinitionCreationFlag``; the builder looks them up with getattr.
    """

    trt_version: TrtVersion
    precision: str
    builder_flags: tuple[str, ...]
    network_flags: tuple[str, ...]
    use_calibrator: bool
    strongly_typed: bool
    requires_fp16_onnx: bool
    has_qdq: bool
    dla_core: int | None
    gpu_fallback: bool
    workspace_bytes: int | None
    needs_portable_dcn: bool
    dcn_plugin_version: str
    warnings: tuple[str, ...] = field(default=())


def plan_build(
    trt_version: str | TrtVersion,
    precision: str,
    dla_core: int | None = None,
    gpu_fallback: bool = False,
    workspace_mib: int | None = None,
    has_qdq: bool = False,
) -> BuildPlan:
    """Decide builder flags, calibration and DLA settings; refuse impossible combinations.

    ``int8`` means INT8 where possible and FP16 elsewhere on releases with precision flags
    (the deformable conv plugin has no INT8 kernel). ``has_qdq``: the ONNX carries
    QuantizeLinear/DequantizeLinear nodes (explicit quantization, no calibrator).
    """
    feats = TrtFeatures(trt_version)
    v = feats.version
    if precision not in PRECISIONS:
        raise EdgesegError(
            f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}"
        )
    if workspace_mib is not None and workspace_mib <= 0:
        raise EdgesegError(f"workspace must be a positive number of MiB, got {workspace_mib}")
    if dla_core is not None and dla_core < 0:
        raise EdgesegError(f"DLA core must be 0 or more, got {dla_core}")
    if dla_core is not None and precision == "fp32":
        raise EdgesegError(
            "DLA runs only fp16 or int8: pass --precision fp16 or int8, or leave out --dla-core"
        )
    if has_qdq and precision != "int8":
        raise EdgesegError(
            f"this ONNX has Q/DQ (INT8) nodes, so it builds only with --precision int8, "
            f"not {precision}"
        )
    if feats.strongly_typed_only and precision == "int8" and not has_qdq:
        raise EdgesegError(
            f"TensorRT {v.short} has no INT8 calibrator: run `edgeseg calibrate` to write a "
            "Q/DQ ONNX and build the engine from that"
        )

    warnings: list[str] = []
    flags: list[str] = []
    use_calibrator = False
    requires_fp16_onnx = False
    if feats.strongly_typed_only:
        # Types come from the network itself; fp16 needs an fp16 ONNX.
        requires_fp16_onnx = precision == "fp16"
    elif precision == "fp16":
        flags.append("FP16")
    elif precision == "int8":
        flags += ["INT8", "FP16"]
        use_calibrator = not has_qdq
        if use_calibrator and feats.implicit_int8_deprecated:
            warnings.append(
                f"implicit INT8 calibration is deprecated since TensorRT 10.1 (this is {v.short}); "
                "`edgeseg calibrate` writes a Q/DQ ONNX that TensorRT 11 can still build"
            )
    # gpu_fallback is a standing preference ("if a DLA is used, let layers fall back"); every
    # shipped profile sets it, so without a DLA core it is silently unused, not warned about.
    if dla_core is not None:
        if gpu_fallback:
            flags.append("GPU_FALLBACK")
        else:
            warnings.append(
                "DLA without GPU fallback fails on any layer DLA lacks (plugins such as the "
                "deformable conv, GridSample): pass --gpu-fallback unless the network is all-DLA"
            )

    network_flags: list[str] = []
    if feats.explicit_batch_flag:
        network_flags.append("EXPLICIT_BATCH")
    if feats.strongly_typed_only:
        network_flags.append("STRONGLY_TYPED")

    return BuildPlan(
        trt_version=v,
        precision=precision,
        builder_flags=tuple(flags),
        network_flags=tuple(network_flags),
        use_calibrator=use_calibrator,
        strongly_typed=feats.strongly_typed_only,
        requires_fp16_onnx=requires_fp16_onnx,
        has_qdq=has_qdq,
        dla_core=dla_core,
        gpu_fallback=gpu_fallback and dla_core is not None,
        workspace_bytes=None if workspace_mib is None else int(workspace_mib) << 20,
        needs_portable_dcn=feats.needs_portable_dcn,
        dcn_plugin_version=feats.modulated_deform_plugin_version,
        warnings=tuple(warnings),
    )


def parity_tolerance(precision: str, tf32: bool = True) -> float:
    """rtol = atol for comparing a TensorRT engine's float output with PyTorch fp32.

    TensorRT runs FP32 convolutions in TF32 on Ampere and newer unless ``BuilderFlag.TF32`` is
    cleared (about 6e-4 through DESANet's offset conv), so fp32 with TF32 gets 3e-3, strict
    fp32 1e-4; fp16 3e-2; int8 is judged by argmax agreement, its 3e-1 only catches garbage.
    """
    if precision == "fp32":
        return 3e-3 if tf32 else 1e-4
    if precision == "fp16":
        return 3e-2
    if precision == "int8":
        return 3e-1
    raise EdgesegError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")


# ---------------------------------------------------------------------------------------------
# ModulatedDeformConv2d plugin


def _pair(name: str, v: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (int(v), int(v))
    vals = tuple(int(x) for x in v)
    if len(vals) != 2:
        raise EdgesegError(f"{name} needs 2 values (h, w), got {v!r}")
    return (vals[0], vals[1])


def modulated_deform_fields(
    stride: int | tuple[int, int],
    padding: int | tuple[int, int],
    dilation: int | tuple[int, int],
    group: int = 1,
    deformable_group: int = 1,
) -> dict[str, np.ndarray]:
    """Plugin fields of ``ModulatedDeformConv2d`` (v1 and v2 share them), each an int32 array.

    Values are given (h, w) as in torch and ONNX, which is also what TensorRT's own ONNX parser
    passes. The plugin's enqueue, however, hands element 0 to the kernel launcher's *width*
    argument and element 1 to its *height* argument (modulatedDeformConvPlugin.cpp in 8.6 to
    10.x), so asymmetric values would be applied transposed. They are refused here; DESANet's
    deformable conv is 3x3 with equal stride, padding and dilation on both axes.
    """
    s, p, d = _pair("stride", stride), _pair("padding", padding), _pair("dilation", dilation)
    for name, (a, b), low in (("stride", s, 1), ("padding", p, 0), ("dilation", d, 1)):
        if a < low or b < low:
            raise EdgesegError(f"deformable conv {name} must be >= {low}, got {(a, b)}")
        if a != b:
            raise EdgesegError(
                f"deformable conv {name} {(a, b)} differs between h and w: TensorRT's "
                f"{MODULATED_DEFORM_PLUGIN} plugin reads its 2-value fields transposed, so only "
                "equal values are exported"
            )
    if group < 1 or deformable_group < 1:
        raise EdgesegError(
            f"group and deformable_group must be >= 1, got {group} and {deformable_group}"
        )
    return {
        "stride": np.array(s, dtype=np.int32),
        "padding": np.array(p, dtype=np.int32),
        "dilation": np.array(d, dtype=np.int32),
        "group": np.array([group], dtype=np.int32),
        "deformable_group": np.array([deformable_group], dtype=np.int32),
    }


def dcnv1_mask_shape(
    batch: int, kernel_hw: tuple[int, int], out_hw: tuple[int, int], deformable_group: int = 1
) -> tuple[int, int, int, int]:
    """Shape of the all-ones mask that turns the modulated (v2) plugin into DCNv1."""
    kh, kw = kernel_hw
    return (int(batch), int(deformable_group) * kh * kw, int(out_hw[0]), int(out_hw[1]))


def check_offset_layout(
    offset_shape: tuple[int, ...], kernel_hw: tuple[int, int], out_hw: tuple[int, int] | None = None
) -> int:
    """Validate an offset tensor shape against :data:`OFFSET_LAYOUT`; return deformable groups."""
    if len(offset_shape) != 4:
        raise EdgesegError(f"offset must be 4-D (N, 2*G*kh*kw, H, W), got shape {offset_shape}")
    kh, kw = kernel_hw
    taps2 = 2 * kh * kw
    c = int(offset_shape[1])
    if c == 0 or c % taps2:
        raise EdgesegError(
            f"offset has {c} channels; a {kh}x{kw} kernel needs a multiple of {taps2} "
            f"({OFFSET_LAYOUT})"
        )
    if out_hw is not None and tuple(int(v) for v in offset_shape[2:]) != tuple(out_hw):
        raise EdgesegError(
            f"offset spatial size {tuple(offset_shape[2:])} != conv output size {tuple(out_hw)}"
        )
    return c // taps2


# ---------------------------------------------------------------------------------------------
# Tensor data types




# ---------------------------------------------------------------------------------------------
# Calibration cache (implicit INT8)
#
# TensorRT's text format: a header line ``TRT-<NV_TENSORRT_VERSION>-<algorithm>`` and one line per
# tensor ``<name>: <hex>`` where <hex> is the IEEE-754 float32 bit pattern of the scale
# (dynamic range / 127) written as a big-endian hexadecimal number, e.g. ``prob: 3c010a14``
# (= 0.0078759). NVIDIA documents the header in sampleINT8's README (``TRT-7000-
# EntropyCalibration2``) and the big-endian reading of the value on its forums.


@dataclass(frozen=True)
class CalibrationCache:
    version_tag: int
    algorithm: str
    scales: dict[str, float]

    @property
    def trt_version(self) -> TrtVersion:
        return TrtVersion.from_cache_tag(self.version_tag)


def scale_to_hex(scale: float) -> str:
    """float32 bit pattern, big-endian, lowercase: ``1/127`` -> ``'3c010204'``."""
    if not math.isfinite(scale) or scale < 0:
        raise EdgesegError(f"calibration scale must be finite and >= 0, got {scale}")
    return struct.pack(">f", scale).hex()


def scale_from_hex(text: str) -> float:
    value = int(text.strip(), 16)
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"not a 32-bit hex value: {text!r}")
    return float(struct.unpack(">f", value.to_bytes(4, "big"))[0])


def format_calibration_cache(
    trt_version: str | TrtVersion,
    scales: Mapping[str, float],
    algorithm: str = CALIBRATION_ALGORITHM,
) -> bytes:
    v = parse_trt_version(trt_version)
    lines = [f"TRT-{v.cache_tag}-{algorithm}"]
    for name, scale in scales.items():
        if not name or "\n" in name:
            raise EdgesegError(f"bad tensor name in calibration cache: {name!r}")
        lines.append(f"{name}: {scale_to_hex(float(scale))}")
    return ("\n".join(lines) + "\n").encode()


_HEADER_RE = re.compile(r"^TRT-(\d+)-(\w+)$")


def parse_calibration_cache(
    data: bytes | str, source: str = "calibration cache"
) -> CalibrationCache:
    text = data.decode() if isinstance(data, bytes) else data
    lines = [ln.rstrip("\r") for ln in text.split("\n")]
    m = _HEADER_RE.match(lines[0].strip())
    if not m:
        raise EdgesegError(
            f"{source}: first line should be TRT-<version>-{CALIBRATION_ALGORITHM}, "
            f"got {lines[0][:60]!r}"
        )
    scales: dict[str, float] = {}
    for i, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, sep, hexval = line.rpartition(": ")
        try:
            if not sep or not name:
                raise ValueError(line)
            scales[name] = scale_from_hex(hexval)
        except ValueError:
            raise EdgesegError(
                f"{source} line {i}: expected '<tensor>: <hex>', got {line!r}"
            ) from None
    return CalibrationCache(version_tag=int(m.group(1)), algorithm=m.group(2), scales=scales)


def write_calibration_cache(
    path: str | Path, trt_version: str | TrtVersion, scales: Mapping[str, float]
) -> Path:
    """Write an EntropyCalibration2 cache TensorRT reads back through a calibrator."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(format_calibration_cache(trt_version, scales))
    return path


def read_calibration_cache(path: str | Path) -> CalibrationCache:
    path = Path(path)
    if not path.is_file():
        raise EdgesegError(f"calibration cache not found: {path}")
    return parse_calibration_cache(path.read_bytes(), source=str(path))
