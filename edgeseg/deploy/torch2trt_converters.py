"""torch2trt converters for the two ops DESANet uses that torch2trt has none for.

* ``torchvision.ops.deform_conv.deform_conv2d`` (the ``native`` deformable conv): TensorRT's
  ``ModulatedDeformConv2d`` plugin (inputs x, offset, mask, weight, bias; DCNv1 passes an all-ones
  mask). When the plugin library lacks it, the same maths is built from standard layers: one
  IGridSampleLayer samples every kernel tap at once (offset pairs swapped to (x, y), normalised
  by constant scale/shift layers), the optional mask multiplies, and a 1x1 convolution over the
  (C * kh * kw) sampled channels applies the weights. That fallback covers group = 1 and
  deformable_group = 1 (DESANet's case) and raises EdgesegError otherwise.
* ``torch.nn.functional.grid_sample`` (the ``portable`` deformable conv): IGridSampleLayer.

Importing this module registers both with torch2trt when torch2trt imports (``register()``);
without it nothing happens. The converters take TensorRT from :func:`_tensorrt` and use only
``ctx.method_args / method_kwargs / method_return / network`` of torch2trt's context, so they run
against a fake context in the tests. Argument handling and enum choices are pure functions.

Engines converted here have a static batch for the plugin path (the ones-mask is a constant).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from edgeseg.deploy.trt_compat import (
    MODULATED_DEFORM_PLUGIN,
    TrtFeatures,
    check_offset_layout,
    dcnv1_mask_shape,
    modulated_deform_fields,
)
from edgeseg.errors import EdgesegError

__all__ = [
    "DEFORM_CONV2D",
    "GRID_SAMPLE",
    "DeformArgs",
    "GridSampleArgs",
    "add_deform_conv",
    "convert_deform_conv2d",
    "convert_grid_sample",
    "deform_grid_constants",
    "grid_sample_modes",
    "normalise_deform_args",
    "normalise_grid_sample_args",
    "register",
    "torch2trt_available",
]

DEFORM_CONV2D = "torchvision.ops.deform_conv.deform_conv2d"
GRID_SAMPLE = "torch.nn.functional.grid_sample"
DcnMode = Literal["auto", "plugin", "native"]

_settings: dict[str, Any] = {"dcn": "auto", "registered": False}


# ---------------------------------------------------------------------------------------------
# Registration


def torch2trt_available() -> bool:
    try:
        import torch2trt  # noqa: F401
    except (ImportError, OSError, RuntimeError, AttributeError):  # or a TensorRT without libs
        return False
    return True


def register(dcn: DcnMode = "auto") -> bool:
    """Register the converters with torch2trt; False (and nothing done) without torch2trt.

    Args:
        dcn: ``auto`` uses the plugin and falls back to standard layers when it is missing,
            ``plugin`` requires the plugin, ``native`` always builds the standard-layer version.
    """
    if dcn not in ("auto", "plugin", "native"):
        raise EdgesegError(f"unknown deformable conv mode {dcn!r}: auto, plugin or native")
    _settings["dcn"] = dcn
    if _settings["registered"]:
        return True
    if not torch2trt_available():
        return False
    from torch2trt import tensorrt_converter

    tensorrt_converter(DEFORM_CONV2D)(convert_deform_conv2d)
    tensorrt_converter(GRID_SAMPLE)(convert_grid_sample)
    _settings["registered"] = True
    return True


def _tensorrt() -> Any:
    from edgeseg.deploy.tensorrt import require_tensorrt

    return require_tensorrt()


# ---------------------------------------------------------------------------------------------
# Pure argument handling


def _pair(name: str, v: Any) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    if isinstance(v, (tuple, list, torch.Size)) and len(v) == 2:
        return (int(v[0]), int(v[1]))
    raise TypeError(f"deform_conv2d {name} must be an int or a pair, got {v!r}")


@dataclass(frozen=True)
class DeformArgs:
    """``deform_conv2d`` arguments in one shape: pairs for stride/padding/dilation."""

    input: torch.Tensor
    offset: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    mask: torch.Tensor | None

    @property
    def kernel_hw(self) -> tuple[int, int]:
        return (int(self.weight.shape[2]), int(self.weight.shape[3]))

    @property
    def out_hw(self) -> tuple[int, int]:
        return (int(self.offset.shape[2]), int(self.offset.shape[3]))

    @property
    def groups(self) -> int:
        return int(self.input.shape[1]) // int(self.weight.shape[1])

    @property
    def deformable_groups(self) -> int:
        return int(self.offset.shape[1]) // (2 * self.kernel_hw[0] * self.kernel_hw[1])


_DEFORM_PARAMS = ("input", "offset", "weight", "bias", "stride", "padding", "dilation", "mask")
_DEFORM_DEFAULTS: dict[str, Any] = {
    "bias": None,
    "stride": (1, 1),
    "padding": (0, 0),
    "dilation": (1, 1),
    "mask": None,
}


def _bind(
    fn: str,
    params: Sequence[str],
    defaults: Mapping[str, Any],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
) -> dict[str, Any]:
    """Python's own argument binding for ``fn(*args, **kwargs)``, as a dict."""
    if len(args) > len(params):
        raise TypeError(f"{fn} takes {len(params)} arguments, got {len(args)} positional")
    bound = dict(zip(params, args))
    for key, value in kwargs.items():
        if key not in params:
            raise TypeError(f"{fn} got an unexpected keyword argument {key!r}")
        if key in bound:
            raise TypeError(f"{fn} got multiple values for argument {key!r}")
        bound[key] = value
    for key in params:
        if key not in bound:
            if key not in defaults:
                raise TypeError(f"{fn} missing required argument {key!r}")
            bound[key] = defaults[key]
    return bound


def normalise_deform_args(args: Sequence[Any], kwargs: Mapping[str, Any]) -> DeformArgs:
    """Bind torchvision's ``deform_conv2d(input, offset, weight, bias=None, stride=(1, 1),
    padding=(0, 0), dilation=(1, 1), mask=None)`` however it was called, and check shapes."""
    b = _bind("deform_conv2d", _DEFORM_PARAMS, _DEFORM_DEFAULTS, args, kwargs or {})
    a = DeformArgs(
        input=b["input"],
        offset=b["offset"],
        weight=b["weight"],
        bias=b["bias"],
        stride=_pair("stride", b["stride"]),
        padding=_pair("padding", b["padding"]),
        dilation=_pair("dilation", b["dilation"]),
        mask=b["mask"],
    )
    if a.input.dim() != 4 or a.weight.dim() != 4:
        raise ValueError("deform_conv2d needs 4-D input (N, C, H, W) and weight (O, C/g, kh, kw)")
    if int(a.input.shape[1]) % int(a.weight.shape[1]):
        raise ValueError(
            f"input channels {a.input.shape[1]} not divisible by weight's {a.weight.shape[1]}"
        )
    dg = check_offset_layout(tuple(a.offset.shape), a.kernel_hw)
    if a.mask is not None and int(a.mask.shape[1]) != dg * a.kernel_hw[0] * a.kernel_hw[1]:
        raise ValueError(
            f"mask has {a.mask.shape[1]} channels, expected {dg * a.kernel_hw[0] * a.kernel_hw[1]}"
        )
    if a.bias is not None and int(a.bias.numel()) != int(a.weight.shape[0]):
        raise ValueError(f"bias has {a.bias.numel()} values for {a.weight.shape[0]} channels")
    return a


@dataclass(frozen=True)
class GridSampleArgs:
    input: torch.Tensor
    grid: torch.Tensor
    mode: str
    padding_mode: str
    align_corners: bool


def normalise_grid_sample_args(args: Sequence[Any], kwargs: Mapping[str, Any]) -> GridSampleArgs:
    """Bind ``F.grid_sample(input, grid, mode='bilinear', padding_mode='zeros',
    align_corners=None)``; None means False, torch's default."""
    b = _bind(
        "grid_sample",
        ("input", "grid", "mode", "padding_mode", "align_corners"),
        {"mode": "bilinear", "padding_mode": "zeros", "align_corners": None},
        args,
        kwargs or {},
    )
    if b["input"].dim() != 4 or b["grid"].dim() != 4 or int(b["grid"].shape[-1]) != 2:
        raise ValueError("TensorRT grid sample needs 4-D input (N, C, H, W) and grid (N, H, W, 2)")
    return GridSampleArgs(
        b["input"], b["grid"], str(b["mode"]), str(b["padding_mode"]), bool(b["align_corners"])
    )


_INTERPOLATION = {"bilinear": "LINEAR", "nearest": "NEAREST", "bicubic": "CUBIC"}
# TensorRT's own ONNX GridSample importer uses the same correspondence.
_SAMPLE_MODE = {"zeros": "FILL", "border": "CLAMP", "reflection": "REFLECT"}


def grid_sample_modes(
    mode: str, padding_mode: str, align_corners: bool | None
) -> tuple[str, str, bool]:
    """torch names -> (``trt.InterpolationMode`` name, ``trt.SampleMode`` name, align_corners)."""
    if mode not in _INTERPOLATION:
        raise EdgesegError(f"grid_sample mode {mode!r} has no TensorRT equivalent")
    if padding_mode not in _SAMPLE_MODE:
        raise EdgesegError(f"grid_sample padding_mode {padding_mode!r} has no TensorRT equivalent")
    return _INTERPOLATION[mode], _SAMPLE_MODE[padding_mode], bool(align_corners)


# ---------------------------------------------------------------------------------------------
# Network building (thin; works on any object with TensorRT's INetworkDefinition methods)


def _np(t: torch.Tensor, dtype: Any = None) -> np.ndarray:
    arr = t.detach().cpu().numpy()
    return np.ascontiguousarray(arr if dtype is None else arr.astype(dtype))


def _const(network: Any, array: np.ndarray) -> Any:
    return network.add_constant(tuple(int(s) for s in array.shape), array).get_output(0)


def _trt_of(network: Any, t: torch.Tensor, dtype: Any = None) -> Any:
    """The TensorRT tensor behind ``t``; leaf tensors (weights) become constants."""
    if hasattr(t, "_trt"):
        return t._trt
    trt_tensor = _const(network, _np(t, dtype))
    t._trt = trt_tensor  # type: ignore[attr-defined]  # torch2trt's convention
    return trt_tensor


def _np_dtype(t: torch.Tensor) -> Any:
    return np.float16 if t.dtype == torch.float16 else np.float32


def _create_plugin(trt: Any, fields: Mapping[str, np.ndarray]) -> tuple[str, Any] | None:
    """(version, plugin) from the registry, preferred version first; None if not registered."""
    features = TrtFeatures(trt.__version__)
    registry = trt.get_plugin_registry()
    fc = trt.PluginFieldCollection(
        [trt.PluginField(k, v, trt.PluginFieldType.INT32) for k, v in fields.items()]
    )
    for version in features.modulated_deform_plugin_versions:
        # Both return None for a plugin that is not registered.
        if version == "1":
            creator = registry.get_plugin_creator(MODULATED_DEFORM_PLUGIN, "1", "")
        else:
            creator = registry.get_creator(MODULATED_DEFORM_PLUGIN, version, "")
        if creator is None:
            continue
        if version == "1":
            plugin = creator.create_plugin(MODULATED_DEFORM_PLUGIN, fc)
        else:
            plugin = creator.create_plugin(MODULATED_DEFORM_PLUGIN, fc, trt.TensorRTPhase.BUILD)
        if plugin is None:
            raise EdgesegError(
                f"TensorRT {trt.__version__} refused {MODULATED_DEFORM_PLUGIN} v{version} with "
                f"fields { {k: v.tolist() for k, v in fields.items()} }"
            )
        return version, plugin
    return None


def add_deform_conv(network: Any, trt: Any, a: DeformArgs, dcn: DcnMode = "auto") -> Any:
    """Add ``deform_conv2d`` to ``network``; returns the output ITensor."""
    dtype = _np_dtype(a.input)
    x_trt = _trt_of(network, a.input, dtype)
    offset_trt = _trt_of(network, a.offset, dtype)
    plugin = None
    if dcn != "native":
        try:
            fields = modulated_deform_fields(
                a.stride, a.padding, a.dilation, a.groups, a.deformable_groups
            )
        except EdgesegError:  # values the plugin can't take (asymmetric): standard layers
            if dcn == "plugin":
                raise
        else:
            plugin = _create_plugin(trt, fields)
        if plugin is None and dcn == "plugin":
            raise EdgesegError(
                f"TensorRT {trt.__version__} has no {MODULATED_DEFORM_PLUGIN} plugin registered "
                "(libnvinfer_plugin missing?); use the portable deformable conv instead"
            )
    if plugin is None:
        mask_trt = None if a.mask is None else _trt_of(network, a.mask, dtype)
        return _add_deform_conv_layers(network, trt, a, x_trt, offset_trt, mask_trt, dtype)

    if a.mask is None:  # DCNv1 through the modulated (v2) plugin: a mask of ones
        shape = dcnv1_mask_shape(int(a.offset.shape[0]), a.kernel_hw, a.out_hw, a.deformable_groups)
        mask_trt = _const(network, np.ones(shape, dtype=dtype))
    else:
        mask_trt = _trt_of(network, a.mask, dtype)
    inputs = [x_trt, offset_trt, mask_trt, _const(network, _np(a.weight, dtype))]
    if a.bias is not None:
        inputs.append(_const(network, _np(a.bias.reshape(-1), dtype)))
    version, plugin_obj = plugin
    if version == "1":
        layer = network.add_plugin_v2(inputs, plugin_obj)
    else:
        layer = network.add_plugin_v3(inputs, [], plugin_obj)
    return layer.get_output(0)


def deform_grid_constants(
    in_hw: tuple[int, int],
    out_hw: tuple[int, int],
    kernel_hw: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(swap, scale, shift) turning offsets into a grid_sample grid, align_corners=False.

    ``swap`` (int32, 2K) reorders each tap's (dy, dx) to (dx, dy); then for every tap t = (a, b)
    and output pixel (i, j): ``gx = dx * 2/W + (2 * (j*sw - pw + b*dw) + 1)/W - 1`` and likewise
    ``gy`` with rows, i.e. ``grid = swapped * scale + shift`` with scale (1, 2K, 1, 1) and shift
    (1, 2K, ho, wo) in float64 (cast by the caller).
    """
    (h, w), (ho, wo), (kh, kw) = in_hw, out_hw, kernel_hw
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    k = kh * kw
    swap = np.arange(2 * k, dtype=np.int32).reshape(k, 2)[:, ::-1].reshape(-1).copy()
    scale = np.empty((1, 2 * k, 1, 1))
    scale[0, 0::2], scale[0, 1::2] = 2.0 / w, 2.0 / h
    rows = np.arange(ho) * sh - ph
    cols = np.arange(wo) * sw - pw
    shift = np.empty((1, 2 * k, ho, wo))
    for t in range(k):
        a, b = divmod(t, kw)
        shift[0, 2 * t] = ((2 * (cols + b * dw) + 1) / w - 1)[None, :]
        shift[0, 2 * t + 1] = ((2 * (rows + a * dh) + 1) / h - 1)[:, None]
    return swap, scale, shift


def _add_deform_conv_layers(
    network: Any, trt: Any, a: DeformArgs, x_trt: Any, offset_trt: Any, mask_trt: Any, dtype: Any
) -> Any:
    """DCN from standard layers: gather, elementwise, shuffle, grid sample, 1x1 convolution."""
    if a.groups != 1 or a.deformable_groups != 1:
        raise EdgesegError(
            f"no {MODULATED_DEFORM_PLUGIN} plugin in this TensorRT and the standard-layer "
            f"fallback supports group=1, deformable_group=1 only (got {a.groups}, "
            f"{a.deformable_groups}): install TensorRT's plugin library (libnvinfer_plugin)"
        )
    cin, (h, w) = int(a.input.shape[1]), (int(a.input.shape[2]), int(a.input.shape[3]))
    (kh, kw), (ho, wo) = a.kernel_hw, a.out_hw
    k, cout = kh * kw, int(a.weight.shape[0])
    swap, scale, shift = deform_grid_constants(
        (h, w), (ho, wo), (kh, kw), a.stride, a.padding, a.dilation
    )
    ew = trt.ElementWiseOperation

    swapped = network.add_gather(offset_trt, _const(network, swap), 1).get_output(0)
    grid = network.add_elementwise(swapped, _const(network, scale.astype(dtype)), ew.PROD)
    grid = network.add_elementwise(grid.get_output(0), _const(network, shift.astype(dtype)), ew.SUM)
    # (N, 2K, ho, wo) -> (N, K, ho, wo, 2) -> (N, K*ho, wo, 2); 0 copies the batch dimension
    taps = network.add_shuffle(grid.get_output(0))
    taps.reshape_dims = (0, k, 2, ho, wo)
    taps.second_transpose = (0, 1, 3, 4, 2)
    flat = network.add_shuffle(taps.get_output(0))
    flat.reshape_dims = (0, k * ho, wo, 2)

    sample = network.add_grid_sample(x_trt, flat.get_output(0))  # (N, C, K*ho, wo)
    sample.interpolation_mode = trt.InterpolationMode.LINEAR
    sample.sample_mode = trt.SampleMode.FILL
    sample.align_corners = False
    sampled = sample.get_output(0)
    if mask_trt is not None:
        m = network.add_shuffle(mask_trt)
        m.reshape_dims = (0, 1, k * ho, wo)
        sampled = network.add_elementwise(sampled, m.get_output(0), ew.PROD).get_output(0)
    cols = network.add_shuffle(sampled)
    cols.reshape_dims = (0, cin * k, ho, wo)  # channel c*K + t, matching weight.reshape(O, C*K)

    kernel = _np(a.weight, dtype).reshape(cout, cin * k, 1, 1)
    bias = None if a.bias is None else _np(a.bias.reshape(-1), dtype)
    conv = network.add_convolution_nd(cols.get_output(0), cout, (1, 1), kernel, bias)
    return conv.get_output(0)


# ---------------------------------------------------------------------------------------------
# torch2trt converters


def convert_deform_conv2d(ctx: Any) -> None:
    """torch2trt converter for ``torchvision.ops.deform_conv.deform_conv2d``."""
    from edgeseg.deploy.tensorrt import init_plugins

    trt = _tensorrt()
    init_plugins(trt)  # the process-wide logger: the plugin library keeps a pointer to it
    a = normalise_deform_args(ctx.method_args, ctx.method_kwargs)
    output = ctx.method_return
    output._trt = add_deform_conv(ctx.network, trt, a, _settings["dcn"])


def convert_grid_sample(ctx: Any) -> None:
    """torch2trt converter for ``torch.nn.functional.grid_sample`` (IGridSampleLayer)."""
    trt = _tensorrt()
    g = normalise_grid_sample_args(ctx.method_args, ctx.method_kwargs)
    interp, sample_mode, align = grid_sample_modes(g.mode, g.padding_mode, g.align_corners)
    dtype = _np_dtype(g.input)
    layer = ctx.network.add_grid_sample(
        _trt_of(ctx.network, g.input, dtype), _trt_of(ctx.network, g.grid, dtype)
    )
    layer.interpolation_mode = getattr(trt.InterpolationMode, interp)
    layer.sample_mode = getattr(trt.SampleMode, sample_mode)
    layer.align_corners = align
    ctx.method_return._trt = layer.get_output(0)


register()
