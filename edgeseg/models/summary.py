"""Parameter and FLOP accounting for `edgeseg info` and the bench report."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgeseg.models.desanet import DESANet, build_model

__all__ = ["COMPONENTS", "component_of", "params_by_component", "count_gflops", "model_summary"]

# module-name prefix -> component (paper names), first match wins
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("spatial_path.", "spatial_path"),
    ("context_path.backbone.", "context_backbone"),
    ("context_path.refine", "refinement_modules"),
    ("context_path.fasppm.", "fasppm"),
    ("context_path.head", "context_heads"),
    ("ffm.", "feature_fusion"),
    ("skip.", "skip_connection"),
    ("decoder.", "decoder"),
    ("fuse.", "decoder"),
    ("classifier.", "decoder"),
    ("aux_head.", "aux_head"),
)


def component_of(name: str) -> str:
    for prefix, comp in COMPONENTS:
        if name.startswith(prefix):
            return comp
    return name.split(".")[0]


def params_by_component(model: nn.Module) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, p in model.named_parameters():
        comp = component_of(name)
        out[comp] = out.get(comp, 0) + p.numel()
    return out


def count_gflops(model: DESANet, height: int, width: int) -> float:
    """Inference GFLOPs (multiply-add = 2) at 1x3xHxW, counted on the meta device.

    The portable deformable conv is counted (its 1x1 matmuls equal a dense 3x3 conv);
    torchvision's fused kernel is invisible to the FLOP counter.
    """
    from torch.utils.flop_counter import FlopCounterMode

    meta = build_model(model.variant, num_classes=model.num_classes, aux=False).to("meta").eval()
    meta.set_dcn_impl("portable")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        meta(torch.empty(1, 3, height, width, device="meta"))
    return counter.get_total_flops() / 1e9


def model_summary(variant: str, height: int = 512, width: int = 1024) -> dict[str, Any]:
    """The `edgeseg info` report: inference-graph parameters (no aux head) and GFLOPs."""
    model = build_model(variant, aux=False)
    comps = params_by_component(model)
    return {
        "model": variant,
        "params_total": model.inference_parameters(),
        "params_by_component": comps,
        "gflops": round(count_gflops(model, height, width), 3),
        "input_hw": [height, width],
    }
