"""Deformable convolution (Dai et al., ICCV 2017) with two interchangeable implementations.

* ``native``: ``torchvision.ops.deform_conv.deform_conv2d``. torch.onnx (dynamo) exports it as
  ONNX ``DeformConv``; our torch2trt converter hooks this exact dotted path, so it is looked
  up at call time rather than imported once.
* ``portable``: bilinear sampling with ``F.grid_sample`` per kernel tap followed by a 1x1
  matmul per tap. Only standard ops, so it exports to plain ONNX (GridSample, Conv) and builds
  in TensorRT without plugins. On CPU it is also several times faster than torchvision's
  kernel, because the matmuls go to oneDNN.

Both share one parameterisation and the offset layout of torchvision and TensorRT's
ModulatedDeformConv2d plugin: ``offset[:, 2*t]`` is the row (h) shift and ``offset[:, 2*t+1]``
the column (w) shift of kernel tap ``t`` (row-major over the kernel window).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DeformableConv2d", "deform_conv2d_portable", "deform_conv2d_native", "DcnImpl"]

DcnImpl = Literal["auto", "native", "portable"]


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def deform_conv2d_native(
    x: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> Tensor:
    import torchvision.ops.deform_conv as tv_dcn

    return tv_dcn.deform_conv2d(
        x, offset, weight, bias, stride=stride, padding=padding, dilation=dilation
    )


def deform_conv2d_portable(
    x: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    dilation: tuple[int, int] = (1, 1),
) -> Tensor:
    """DCNv1 (one offset group, no mask) from grid_sample + 1x1 convs; same maths as torchvision.

    Sampling outside the image reads zeros, corner by corner, exactly like torchvision's
    bilinear kernel (``padding_mode='zeros'``; ``align_corners=False`` maps pixel centres).
    """
    n, cin, h, w = x.shape
    cout, cin_w, kh, kw = weight.shape
    if cin_w != cin:
        raise ValueError(f"weight expects {cin_w} input channels, got {cin}")
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    ho, wo = offset.shape[-2:]
    if offset.shape[1] != 2 * kh * kw:
        raise ValueError(f"offset needs {2 * kh * kw} channels, got {offset.shape[1]}")

    dtype, device = x.dtype, x.device
    rows = (torch.arange(ho, device=device, dtype=dtype) * sh - ph).view(1, ho, 1)
    cols = (torch.arange(wo, device=device, dtype=dtype) * sw - pw).view(1, 1, wo)
    out: Tensor | None = None
    for t in range(kh * kw):
        a, b = divmod(t, kw)
        py = rows + a * dh + offset[:, 2 * t]  # (n, ho, wo) sample rows in pixels
        px = cols + b * dw + offset[:, 2 * t + 1]
        # pixel -> normalised coordinates for align_corners=False
        grid = torch.stack(((2 * px + 1) / w - 1, (2 * py + 1) / h - 1), dim=-1)
        sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        term = F.conv2d(sampled, weight[:, :, a : a + 1, b : b + 1])
        out = term if out is None else out + term
    assert out is not None
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def _default_impl(device: torch.device) -> Literal["native", "portable"]:
    # benchmarks/deform_conv.py: on CPU the portable path is ~4x faster than torchvision's
    # kernel; on CUDA torchvision's fused kernel wins.
    return "native" if device.type == "cuda" else "portable"


class DeformableConv2d(nn.Module):
    """3x3 deformable convolution whose offsets come from a zero-initialised 3x3 conv.

    With zero offsets it is an ordinary convolution, so training starts from a plain conv.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation: as nn.Conv2d.
        bias: add a learnable bias (DESANet follows the deformable conv with BN, so False).
        impl: ``native`` (torchvision), ``portable`` (standard ops) or ``auto`` (the faster
            one for the input's device). Changeable after construction, e.g. for export.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        bias: bool = False,
        impl: DcnImpl = "auto",
    ) -> None:
        super().__init__()
        k = _pair(kernel_size)
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        self.impl: DcnImpl = impl
        self.offset = nn.Conv2d(
            in_channels, 2 * k[0] * k[1], k, self.stride, self.padding, self.dilation, bias=True
        )
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *k))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        offset = self.offset(x)
        impl = _default_impl(x.device) if self.impl == "auto" else self.impl
        fn = deform_conv2d_native if impl == "native" else deform_conv2d_portable
        return fn(x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        cout, cin, kh, kw = self.weight.shape
        return f"{cin}, {cout}, kernel_size=({kh}, {kw}), stride={self.stride}, impl={self.impl}"
