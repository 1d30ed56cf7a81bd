"""Deformable convolution (Dai et al., ICCV 2017) with two interchangeable implementations.

* ``native``: ``torchvision.ops.deform_conv.deform_conv2d``. torch.onnx (dynamo) exports it as
  ONNX ``DeformConv`` (with the translation in :mod:`edgeseg.deploy.onnx`); our torch2trt
  converter hooks this exact dotted path, so it is looked up at call time rather than imported
  once.
* ``portable``: standard ops only. It has two formulations of the same maths:

  - the *graph* formulation (:func:`deform_conv2d_grid_sample`), used whenever the call is being
    exported or traced (torch.onnx, torch.export, torch.jit, torch.compile) and on every device
    but the CPU: one ``F.grid_sample`` samples all ``kh*kw`` taps at once into a
    ``(N, C, kh*Ho, kw*Wo)`` tensor in which each output pixel owns a ``kh x kw`` block, and one
    ``F.conv2d`` with the layer's weight and ``stride=(kh, kw)`` contracts every block. ONNX:
    GridSample + Conv (plus Reshape/Transpose/arithmetic on the small offset tensor); TensorRT:
    IGridSampleLayer + a convolution, no plugin, no loops.
  - the *CPU* formulation (:func:`deform_conv2d_cpu`), eager CPU only: the same blocks, but
    bilinear sampling is an ``F.embedding_bag`` (4 corner rows, per-sample bilinear weights, a
    fused vectorised kernel) over the channels-last, zero-padded input, and the work is cut into
    row bands (<= 8 MB of blocks, < 32768 samples) so the sampled blocks stay in cache and are
    never allocated whole; each band goes through the same strided convolution (oneDNN).
    ``grid_sample`` was the bottleneck on CPU (~6 ms per tap at 128 channels x 128x256, 2
    cores, vs ~0.7 ms per tap for embedding_bag), and the whole 9x-sized block image costs
    ~55 ms of fresh pages per call before any arithmetic.

Both give torchvision's numbers: sampling outside the image reads zeros corner by corner (a
bilinear corner outside the image contributes nothing), gradients flow to input, offset, weight
and bias.

Both share one parameterisation and the offset layout of torchvision and TensorRT's
ModulatedDeformConv2d plugin: ``offset[:, 2*t]`` is the row (h) shift and ``offset[:, 2*t+1]``
the column (w) shift of kernel tap ``t`` (row-major over the kernel window). One offset group,
one weight group, no modulation mask (DCNv1).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DcnImpl",
    "DeformableConv2d",
    "deform_conv2d_cpu",
    "deform_conv2d_grid_sample",
    "deform_conv2d_native",
    "deform_conv2d_portable",
]

DcnImpl = Literal["auto", "native", "portable"]
_IMPLS = ("auto", "native", "portable")

# Bytes of sampled (kh*kw*C per output pixel, float32) blocks per band on the CPU path. The
# whole sampled tensor is kh*kw times the input (151 MB at 128 x 128x256); allocating that each
# call costs more than the convolution (fresh pages: ~55 ms here), bands of a few MB are reused
# from the heap and stay in L2/L3. 4-16 MB measured within noise of each other; 8 MB chosen.
_CPU_BAND_BYTES = 8 << 20

# ATen's parallel grain: elementwise ops on fewer elements run inline (see _bilinear_plan).
_GRAIN = 32768

# Table rows are int32 below this many rows per image, else int64.
_INT32_ROWS = 2**31


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


def _check(x: Tensor, offset: Tensor, weight: Tensor) -> None:
    if x.dim() != 4 or offset.dim() != 4 or weight.dim() != 4:
        raise ValueError("x, offset and weight must be 4-D (N, C, H, W)")
    _, cin_w, kh, kw = weight.shape
    if cin_w != x.shape[1]:
        raise ValueError(f"weight expects {cin_w} input channels, got {x.shape[1]}")
    if offset.shape[1] != 2 * kh * kw:
        raise ValueError(
            f"offset needs {2 * kh * kw} channels (one offset group), got {offset.shape[1]}"
        )
    if offset.shape[0] != x.shape[0]:
        raise ValueError(f"offset batch {offset.shape[0]} != input batch {x.shape[0]}")


def _check_out_size(
    x: Tensor, offset: Tensor, weight: Tensor,
    stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int],
) -> None:
    size = [
        (x.shape[2 + i] + 2 * padding[i] - dilation[i] * (weight.shape[2 + i] - 1) - 1)
        // stride[i] + 1
        for i in range(2)
    ]
    if list(offset.shape[-2:]) != size:
        raise ValueError(
            f"offset is {offset.shape[-2]}x{offset.shape[-1]}, the convolution's output is "
            f"{size[0]}x{size[1]}"
        )


def _is_graph_capture() -> bool:
    """True while torch.onnx / torch.export / torch.jit / torch.compile capture the call."""
    compiling = getattr(torch.compiler, "is_compiling", lambda: False)  # torch >= 2.3
    return bool(
        torch.jit.is_scripting()
        or torch.jit.is_tracing()
        or compiling()
        or torch.onnx.is_in_onnx_export()
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
    """DCNv1 (one offset group, no mask) from standard ops; same maths as torchvision.

    Eager CPU float32/float64 calls take :func:`deform_conv2d_cpu`; everything else (other
    devices and dtypes, and any export or trace, which always records the graph formulation)
    takes :func:`deform_conv2d_grid_sample`.
    """
    if (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and not _is_graph_capture()
    ):
        return deform_conv2d_cpu(x, offset, weight, bias, stride, padding, dilation)
    return deform_conv2d_grid_sample(x, offset, weight, bias, stride, padding, dilation)


def _tap_base(
    ho: int, wo: int, kh: int, kw: int, stride: tuple[int, int], padding: tuple[int, int],
    dilation: tuple[int, int], shift: float, dtype: torch.dtype, device: torch.device,
) -> tuple[Tensor, Tensor]:
    """Undeformed sample rows (ho, kh, 1, 1) and columns (wo, kw) of every tap, plus ``shift``."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    by = (torch.arange(ho, device=device, dtype=dtype) * sh + (shift - ph)).view(ho, 1) + (
        torch.arange(kh, device=device, dtype=dtype) * dh
    ).view(1, kh)
    bx = (torch.arange(wo, device=device, dtype=dtype) * sw + (shift - pw)).view(wo, 1) + (
        torch.arange(kw, device=device, dtype=dtype) * dw
    ).view(1, kw)
    return by.view(ho, kh, 1, 1), bx


def deform_conv2d_grid_sample(
    x: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    dilation: tuple[int, int] = (1, 1),
) -> Tensor:
    """Graph formulation: one grid_sample over all taps + one conv with stride (kh, kw).

    The grid is laid out (N, Ho*kh, Wo*kw): output pixel (i, j) owns the block
    [i*kh:(i+1)*kh, j*kw:(j+1)*kw] of the sampled tensor, tap (a, b) at (i*kh+a, j*kw+b), so
    ``conv2d(sampled, weight, stride=(kh, kw))`` is exactly the deformable convolution.
    ``align_corners=False`` puts pixel p at normalised (2p+1)/size - 1, ``padding_mode='zeros'``
    gives torchvision's per-corner zeros. No data-dependent shapes, no loops: exports to ONNX
    GridSample + Conv, converts to TensorRT IGridSampleLayer + convolution.
    """
    _check(x, offset, weight)
    n, _, h, w = x.shape
    _, _, kh, kw = weight.shape
    ho, wo = offset.shape[-2], offset.shape[-1]
    if not _is_graph_capture():
        _check_out_size(x, offset, weight, stride, padding, dilation)
    by, bx = _tap_base(ho, wo, kh, kw, stride, padding, dilation, 0.0, x.dtype, x.device)
    off = offset.view(n, kh, kw, 2, ho, wo)
    # (n, ho, kh, wo, kw): tap rows/columns of each output pixel, in the sampled tensor's layout
    py = off[:, :, :, 0].permute(0, 3, 1, 4, 2) + by
    px = off[:, :, :, 1].permute(0, 3, 1, 4, 2) + bx
    # pixel -> normalised coordinates for align_corners=False: (2p + 1) / size - 1
    gx = px * (2.0 / w) + (1.0 / w - 1.0)
    gy = py * (2.0 / h) + (1.0 / h - 1.0)
    grid = torch.stack((gx, gy), dim=-1).reshape(n, ho * kh, wo * kw, 2)
    sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return F.conv2d(sampled, weight, bias, stride=(kh, kw))


def _bilinear_plan(
    offset: Tensor, by: Tensor, bx: Tensor, h: int, w: int
) -> tuple[Tensor, Tensor]:
    """Table rows and weights of the 4 bilinear corners of every tap of one band.

    ``offset`` is one image's offsets for a band of output rows: (2*kh*kw, rows, wo); ``by``
    (rows, kh, 1, 1) and ``bx`` (wo, kw) are the band's undeformed tap rows and columns from
    :func:`_tap_base` with ``shift=1``.
    The table is that image in channels-last rows, padded with 1 zero row/column before and 2
    after: (h+3, w+3, C) flattened. Sample coordinates are shifted by +1 (the padding) and
    clamped to [0, size+1] *before* the corners are taken: a coordinate beyond the image then
    has both corners on zero padding (or weight exactly 0 on an image pixel, at the clamp
    edge), so it reads 0 with zero gradient, as torchvision does. In between, each corner is
    either an image pixel or a zero pixel of the padding, so zeros are per corner.

    Returns idx and weights, both (rows*kh*wo*kw, 4), ordered (row, kh, wo, kw, corner).

    Written for the CPU's threading: a band has < 32768 samples, so every op here on
    (rows, kh, wo, kw) runs inline, without an OpenMP region (on a loaded machine each region
    can wait milliseconds for a descheduled thread). Hence no ``floor`` (its vectorised kernel
    opens a region from 2048 elements; coordinates are clamped >= 0, so the int cast is the
    floor) and no ``stack`` into the (..., 4) layout (the 4x larger output would go parallel):
    corners are copied column by column into preallocated buffers. Broadcasting over the
    size-4 corner dimension instead is ~100x slower than these contiguous ops.
    """
    wo, (kh, kw) = offset.shape[-1], (by.shape[1], bx.shape[1])
    wp = w + 3
    itype = torch.int32 if (h + 3) * wp < _INT32_ROWS else torch.int64
    off = offset.view(kh, kw, 2, -1, wo).permute(2, 3, 0, 4, 1)  # (2, rows, kh, wo, kw)
    py = (off[0] + by).clamp_(0.0, h + 1.0)
    px = (off[1] + bx).clamp_(0.0, w + 1.0)
    y0 = py.detach().to(itype)  # floor: py >= 0
    x0 = px.detach().to(itype)
    ly = py - y0
    lx = px - x0
    hy = 1.0 - ly
    hx = 1.0 - lx
    shape = (*py.shape, 4)
    wt = py.new_empty(shape)
    for k, (wy, wx) in enumerate(((hy, hx), (hy, lx), (ly, hx), (ly, lx))):
        wt[..., k].copy_(wy * wx)
    i00 = torch.add(x0, y0, alpha=wp)  # top-left corner's table row
    idx = i00.new_empty(shape)
    for k, step in enumerate((0, 1, wp, wp + 1)):
        idx[..., k].copy_(i00 + step if step else i00)
    return idx.view(-1, 4), wt.view(-1, 4)


def _padded_table(x: Tensor) -> Tensor:
    """One image (C, H, W) as channels-last rows ((H+3)*(W+3), C), zero-padded by 1 pixel
    before and 2 after in H and W (see :func:`_bilinear_plan`).

    An NCHW image goes through a 2-D ``(C, H*W) -> (H*W, C)`` transpose first: copy_ has a
    blocked fast path for exactly that (3 ms at 128 x 128x256), while padding or copying the
    permuted 3-D view takes the generic strided copy (14 ms).
    """
    c, h, w = x.shape
    rows = x.permute(1, 2, 0)
    if not rows.is_contiguous():
        rows = x.reshape(c, h * w).t().contiguous().view(h, w, c)
    table = x.new_empty((h + 3, w + 3, c))
    table[0].zero_()
    table[h + 1 :].zero_()
    table[1 : h + 1, 0].zero_()
    table[1 : h + 1, w + 1 :].zero_()
    table[1 : h + 1, 1 : w + 1].copy_(rows)
    return table.view(-1, c)


def deform_conv2d_cpu(
    x: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    dilation: tuple[int, int] = (1, 1),
) -> Tensor:
    """CPU formulation: embedding_bag bilinear sampling in row bands + strided conv per band.

    Same blocks as :func:`deform_conv2d_grid_sample`. The table is the input channels-last
    and zero-padded, one row per pixel; each sampled value is ``embedding_bag`` over its 4
    corner rows with the bilinear weights as per-sample weights (mode ``sum``). Bands of output
    rows keep the sampled blocks a few MB (see ``_CPU_BAND_BYTES``); each band is contracted by
    one channels-last ``conv2d(stride=(kh, kw))`` and copied into the output, which has the
    input's memory format. Python loops over sizes: eager only, never exported.
    """
    _check(x, offset, weight)
    n, c, h, w = x.shape
    cout, _, kh, kw = weight.shape
    ho, wo = offset.shape[-2], offset.shape[-1]
    _check_out_size(x, offset, weight, stride, padding, dilation)
    fmt = (
        torch.channels_last
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        else torch.contiguous_format
    )
    out = torch.empty((n, cout, ho, wo), dtype=x.dtype, device=x.device, memory_format=fmt)
    if out.numel() == 0 or c == 0:
        return out.zero_() if bias is None else out.copy_(bias.view(1, -1, 1, 1).expand_as(out))

    weight_cl = weight.contiguous(memory_format=torch.channels_last)
    per_row = kh * kw * wo  # samples per output row
    band = max(1, min(_CPU_BAND_BYTES // (per_row * c * x.element_size()), _GRAIN // per_row))
    by, bx = _tap_base(ho, wo, kh, kw, stride, padding, dilation, 1.0, offset.dtype, x.device)
    for b in range(n):
        table = _padded_table(x[b])
        bands = []
        for r0 in range(0, ho, band):
            r1 = min(ho, r0 + band)
            idx, wt = _bilinear_plan(offset[b, :, r0:r1], by[r0:r1], bx, h, w)
            sampled = F.embedding_bag(idx, table, per_sample_weights=wt, mode="sum")
            # ((r1-r0)*kh*wo*kw, c): the band's (kh*rows, kw*wo) block image, channels last
            blocks = sampled.view(1, (r1 - r0) * kh, wo * kw, c).permute(0, 3, 1, 2)
            y = F.conv2d(blocks, weight_cl, bias, stride=(kh, kw))  # channels last
            bands.append(y[0].permute(1, 2, 0).reshape(-1, cout))
        rows = torch.cat(bands) if len(bands) > 1 else bands[0]  # (ho*wo, cout)
        if fmt == torch.channels_last:
            out[b].permute(1, 2, 0).view(-1, cout).copy_(rows)
        else:  # 2-D transpose: copy_'s blocked fast path, not the slow 3-D strided copy
            out[b].view(cout, -1).copy_(rows.t())
    return out


def _default_impl(device: torch.device) -> Literal["native", "portable"]:
    # benchmarks/deform_conv.py (docs/benchmarks.md), 128->128 channels, batch 1, no_grad, on
    # a shared, loaded 2-core AMD EPYC (single-threaded, the steadier figures):
    #   128x256: dense 98 ms, portable 194 ms (1.9x), native 1110 ms (10.6x)
    #   256x512: dense 352 ms, portable 547 ms (1.5x), native 3454 ms (9.8x)
    # (1.5-1.7x in quieter single-threaded runs; 2-thread runs under load 8.7x vs 8.6x at
    # 128x256, all waiting on OpenMP). Portable wins on CPU by 5-6x -> portable. On CUDA
    # torchvision's fused kernel needs no kh*kw-sized sampled tensor -> native (not measured
    # here: no GPU).
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
        assert self.offset.bias is not None
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *k))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        if self.impl not in _IMPLS:
            raise ValueError(f"unknown deformable conv impl {self.impl!r}: {', '.join(_IMPLS)}")
        offset = self.offset(x)
        impl = _default_impl(x.device) if self.impl == "auto" else self.impl
        fn = deform_conv2d_native if impl == "native" else deform_conv2d_portable
        return fn(x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        cout, cin, kh, kw = self.weight.shape
        return f"{cin}, {cout}, kernel_size=({kh}, {kw}), stride={self.stride}, impl={self.impl}"
