"""Convolutional input/output (CIO), HarDNet's proxy for DRAM traffic, per layer and component.

HarDNet (Chao et al., ICCV 2019) defines CIO as the sum, over every convolution, of the size
of its input tensor plus the size of its output tensor, counted in elements. Here:

* Counted modules: ``nn.Conv2d``, ``nn.ConvTranspose2d`` and
  ``edgeseg.models.deform.DeformableConv2d``. A deformable conv counts once (its input + its
  output); its inner ``offset`` conv is an ``nn.Conv2d`` and counts as its own row.
  Convolutions called through ``F.conv2d`` directly are not seen.
* Sizes include the batch dimension, so use batch 1 (the default for a shape) to get the
  per-frame figure; batch N multiplies every count by N.
* A module called twice in one forward contributes two rows.
* The model runs in eval mode under ``torch.no_grad`` (training-only auxiliary heads are not
  counted); its previous mode is restored and all hooks are removed afterwards.

MACs: ``out_elements x (C_in / groups) x kh x kw`` for a conv and a deformable conv (bilinear
sampling not counted), ``in_elements x (C_out / groups) x kh x kw`` for a transposed conv.
Params: the module's own weight and bias.

DRAM traffic estimate: ``CIO x bytes per element + weight bytes`` (:func:`dram_traffic_mb`),
a lower bound that ignores caching of activations that fit on chip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from edgeseg.errors import EdgesegError

__all__ = [
    "BYTES_PER_ELEMENT",
    "CioReport",
    "CioRow",
    "bytes_per_element",
    "conv_cio",
    "dram_traffic_mb",
]

BYTES_PER_ELEMENT: dict[str, int] = {"fp32": 4, "fp16": 2, "int8": 1}
_ALIASES = {"float32": "fp32", "float": "fp32", "float16": "fp16", "half": "fp16"}


def bytes_per_element(precision: str) -> int:
    """Bytes per tensor element for ``fp32``, ``fp16`` or ``int8`` (and torch-style aliases)."""
    key = _ALIASES.get(precision.lower(), precision.lower())
    if key not in BYTES_PER_ELEMENT:
        raise EdgesegError(
            f"unknown precision {precision!r}; expected one of {', '.join(BYTES_PER_ELEMENT)}"
        )
    return BYTES_PER_ELEMENT[key]


def dram_traffic_mb(cio_elements: int, bytes_per_element: int, weight_bytes: int = 0) -> float:
    """Estimated DRAM traffic in MB (10^6 bytes): ``CIO x bytes/element + weight bytes``."""
    if cio_elements < 0 or bytes_per_element <= 0 or weight_bytes < 0:
        raise EdgesegError("dram_traffic_mb needs non-negative counts and bytes_per_element > 0")
    return (cio_elements * bytes_per_element + weight_bytes) / 1e6


@dataclass(frozen=True)
class CioRow:
    """One convolution call."""

    name: str
    kind: str
    component: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    in_elements: int
    out_elements: int
    params: int
    macs: int

    @property
    def cio(self) -> int:
        return self.in_elements + self.out_elements


@dataclass
class CioReport:
    """Per-layer rows, per-component totals and the model total.

    ``components`` maps a component name to ``{"cio", "in_elements", "out_elements",
    "params", "macs", "layers"}``; ``cio`` is the model total in elements.
    """

    input_shape: tuple[int, ...]
    rows: list[CioRow] = field(default_factory=list)

    @property
    def cio(self) -> int:
        return sum(r.cio for r in self.rows)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def components(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in self.rows:
            c = out.setdefault(
                r.component,
                {
                    "cio": 0,
                    "in_elements": 0,
                    "out_elements": 0,
                    "params": 0,
                    "macs": 0,
                    "layers": 0,
                },
            )
            c["cio"] += r.cio
            c["in_elements"] += r.in_elements
            c["out_elements"] += r.out_elements
            c["params"] += r.params
            c["macs"] += r.macs
            c["layers"] += 1
        return out

    def dram_mb(self, precision: str = "fp32", weights: bool = True) -> float:
        """:func:`dram_traffic_mb` of this report (weights at the same precision)."""
        bpe = bytes_per_element(precision)
        return dram_traffic_mb(self.cio, bpe, self.params * bpe if weights else 0)

    def to_dict(self, rows: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "input_shape": list(self.input_shape),
            "cio": self.cio,
            "macs": self.macs,
            "params": self.params,
            "layers": len(self.rows),
            "components": self.components,
            "dram_mb": {p: self.dram_mb(p) for p in BYTES_PER_ELEMENT},
        }
        if rows:
            d["rows"] = [
                {
                    **asdict(r),
                    "in_shape": list(r.in_shape),
                    "out_shape": list(r.out_shape),
                    "cio": r.cio,
                }
                for r in self.rows
            ]
        return d


def _component(name: str, mapping: Mapping[str, str] | None) -> str:
    if mapping is not None:
        hits = [p for p in mapping if p == "" or name == p or name.startswith(p + ".")]
        if hits:
            return mapping[max(hits, key=len)]
    return name.split(".", 1)[0] or "<root>"


def _counted_types() -> tuple[type[nn.Module], ...]:
    from edgeseg.models.deform import DeformableConv2d

    return (nn.Conv2d, nn.ConvTranspose2d, DeformableConv2d)


def _own_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters(recurse=False))


def _macs(m: nn.Module, x: Tensor, y: Tensor) -> int:
    if isinstance(m, nn.ConvTranspose2d):
        kh, kw = m.kernel_size
        return x.numel() * (m.out_channels // m.groups) * kh * kw
    if isinstance(m, nn.Conv2d):
        kh, kw = m.kernel_size
        return y.numel() * (m.in_channels // m.groups) * kh * kw
    weight = m.weight  # DeformableConv2d: (out, in, kh, kw)
    assert isinstance(weight, Tensor)
    _, cin, kh, kw = weight.shape
    return y.numel() * cin * kh * kw


@torch.no_grad()
def conv_cio(
    model: nn.Module,
    example: Tensor | Sequence[int],
    components: Mapping[str, str] | None = None,
) -> CioReport:
    """Run ``model`` once and count every convolution's input and output elements.

    Args:
        model: any ``nn.Module`` taking one tensor.
        example: an input tensor, or a shape such as ``(1, 3, 512, 1024)`` (zeros of the
            model's dtype on its device). Batch 1 gives per-frame CIO.
        components: optional ``{module-name prefix: component}`` (longest prefix wins, ``""``
            catches everything); default the first segment of the module name
            (``backbone.stage2.0.conv`` -> ``backbone``).
    """
    if isinstance(example, Tensor):
        x = example
    else:
        shape = tuple(int(s) for s in example)
        if len(shape) != 4 or min(shape) < 1:
            raise EdgesegError(f"input shape must be (N, C, H, W) with positive sizes, got {shape}")
        p = next(model.parameters(), None)
        x = torch.zeros(
            shape,
            dtype=p.dtype if p is not None and p.is_floating_point() else torch.float32,
            device=p.device if p is not None else "cpu",
        )

    counted = _counted_types()
    report = CioReport(input_shape=tuple(x.shape))
    handles = []

    def hook_for(name: str, kind: str) -> Any:
        comp = _component(name, components)

        def hook(m: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            xin = inputs[0]
            report.rows.append(
                CioRow(
                    name=name or "<root>",
                    kind=kind,
                    component=comp,
                    in_shape=tuple(xin.shape),
                    out_shape=tuple(output.shape),
                    in_elements=xin.numel(),
                    out_elements=output.numel(),
                    params=_own_params(m),
                    macs=_macs(m, xin, output),
                )
            )

        return hook

    was_training = model.training
    try:
        for name, m in model.named_modules():
            if isinstance(m, counted):
                handles.append(m.register_forward_hook(hook_for(name, type(m).__name__)))
        model.eval()
        model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return report
