"""DESANet: dual encoder (spatial path + context path) with self-attention (Chang et al., 2021).

Figure 2 of the paper, as forward() reads: the spatial path (3 stride-2 CBRs, deformable conv,
scSE) and the context path (HarDNet-68ds or ResNet-18, refinement modules with strip pooling,
FASPPM) meet in the feature fusion module at 1/8; a single skip connection (low-level context +
spatial features through atrous convs, dilation 1/3/6) joins at 1/4; the classifier output is
upsampled to the input size. An auxiliary head supervises the context path in training only.
Widths and every reading of the paper are recorded in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from edgeseg.models.blocks import (
    FASPPM,
    ConvBNReLU,
    FeatureFusionModule,
    RefinementModule,
    SegHead,
    SkipConnection,
    SpatialPath,
)
from edgeseg.models.deform import DcnImpl

__all__ = ["DESANet", "DesaNetConfig", "ContextPath", "desanet_hn", "desanet_rn", "build_model", "VARIANTS"]


def _resize(x: Tensor, like: Tensor) -> Tensor:
    if x.shape[-2:] == like.shape[-2:]:
        return x
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class DesaNetConfig:
    """Head widths. The paper gives none; these land both variants within 2% of Table 1."""

    context_channels: int = 128  # refinement modules, FASPPM in/out, context heads
    fasppm_channels: int = 352  # each FASPPM branch (sets the totals: 6.2M / 15.3M)
    fasppm_rates: tuple[int, int, int] = (6, 12, 18)
    spatial_channels: int = 128  # spatial path output (BiSeNet: 64,64,64 -> 128)
    fusion_channels: int = 256  # feature fusion module
    decoder_channels: int = 128  # 3x3 head on the fused 1/8 feature
    skip_channels: int = 48  # atrous skip convs at 1/4
    head_channels: int = 64  # fused 1/4 feature before the classifier
    aux_channels: int = 64


class ContextPath(nn.Module):
    """Backbone + refinement modules (1/16, 1/32) + FASPPM on the 1/32 feature, fused top-down
    to 1/8 as in BiSeNet's context path. Returns (1/8 context feature, 1/4 low-level feature)."""

    def __init__(self, backbone: nn.Module, cfg: DesaNetConfig) -> None:
        super().__init__()
        c4, _c8, c16, c32 = backbone.channels  # type: ignore[misc]
        w = cfg.context_channels
        self.backbone = backbone
        self.refine16 = RefinementModule(c16, w)
        self.refine32 = RefinementModule(c32, w)
        self.fasppm = FASPPM(w, cfg.fasppm_channels, cfg.fasppm_rates)
        self.head32 = ConvBNReLU(w, w, 3)
        self.head16 = ConvBNReLU(w, w, 3)
        self.low_channels = c4

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f4, f8, f16, f32 = self.backbone(x)
        top = self.fasppm(self.refine32(f32))
        f16 = self.refine16(f16) + self.head32(_resize(top, f16))
        return self.head16(_resize(f16, f8)), f4


class DESANet(nn.Module):
    """DESANet.

    Args:
        backbone: context-path trunk returning features at 1/4, 1/8, 1/16, 1/32 and exposing
            their channel counts as ``.channels``.
        num_classes: output classes (Cityscapes: 19).
        variant: name stored in checkpoints and exported artifacts.
        cfg: head widths.
        aux: build the auxiliary head (used in train mode only).
        dcn_impl: deformable conv implementation (``auto``, ``native``, ``portable``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int = 19,
        *,
        variant: str = "desanet",
        cfg: DesaNetConfig | None = None,
        aux: bool = True,
        dcn_impl: DcnImpl = "auto",
    ) -> None:
        super().__init__()
        cfg = cfg or DesaNetConfig()
        self.variant, self.num_classes, self.cfg = variant, num_classes, cfg
        self.spatial_path = SpatialPath(64, cfg.spatial_channels, dcn_impl)
        self.context_path = ContextPath(backbone, cfg)
        self.ffm = FeatureFusionModule(
            cfg.spatial_channels + cfg.context_channels, cfg.fusion_channels
        )
        self.decoder = ConvBNReLU(cfg.fusion_channels, cfg.decoder_channels, 3)
        self.skip = SkipConnection(
            self.context_path.low_channels + self.spatial_path.low_channels, cfg.skip_channels
        )
        self.fuse = nn.Sequential(
            ConvBNReLU(cfg.decoder_channels + cfg.skip_channels, cfg.head_channels, 1),
            ConvBNReLU(cfg.head_channels, cfg.head_channels, 3),
        )
        self.classifier = nn.Conv2d(cfg.head_channels, num_classes, 1)
        self.aux_head = SegHead(cfg.context_channels, cfg.aux_channels, num_classes) if aux else None
        self._init_weights()

    def _init_weights(self) -> None:
        for name, m in self.named_modules():
            if name.startswith("context_path.backbone"):
                continue  # torchvision / HarDNet init, or ImageNet weights
            if isinstance(m, nn.Conv2d) and not name.endswith("deform.offset"):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        sp, sp_low = self.spatial_path(x)
        cp, cp_low = self.context_path(x)
        fused = self.decoder(self.ffm(sp, _resize(cp, sp)))
        skip = self.skip(_resize(cp_low, sp_low), sp_low)
        logits = self.classifier(self.fuse(_cat(_resize(fused, skip), skip)))
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        if self.training and self.aux_head is not None:
            aux = F.interpolate(
                self.aux_head(cp), size=x.shape[-2:], mode="bilinear", align_corners=False
            )
            return logits, aux
        return logits

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Weight decay on conv/linear weights only (not BN, not biases), as BiSeNet does."""
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for p in self.parameters():
            if p.requires_grad:
                (decay if p.ndim > 1 else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def inference_parameters(self) -> int:
        """Parameters of the exported graph (the auxiliary head is training-only)."""
        return sum(p.numel() for n, p in self.named_parameters() if not n.startswith("aux_head."))

    def set_dcn_impl(self, impl: DcnImpl) -> None:
        self.spatial_path.deform.impl = impl


def _cat(a: Tensor, b: Tensor) -> Tensor:
    import torch

    return torch.cat([a, b], dim=1)


def desanet_hn(
    *, num_classes: int = 19, aux: bool = True, dcn_impl: DcnImpl = "auto",
    backbone_weights: str | None = None,
) -> DESANet:
    """DESANet-HN: HarDNet-68ds context path without its last harmonic dense block (6.2M)."""
    from edgeseg.models.backbones import hardnet68ds_backbone

    backbone = hardnet68ds_backbone(weights=backbone_weights)
    return DESANet(backbone, num_classes, variant="desanet-hn", aux=aux, dcn_impl=dcn_impl)


def desanet_rn(
    *, num_classes: int = 19, aux: bool = True, dcn_impl: DcnImpl = "auto",
    backbone_weights: str | None = None,
) -> DESANet:
    """DESANet-RN: ResNet-18 context path (15.3M)."""
    from edgeseg.models.backbones import resnet18_backbone

    backbone = resnet18_backbone(weights=backbone_weights)
    return DESANet(backbone, num_classes, variant="desanet-rn", aux=aux, dcn_impl=dcn_impl)


VARIANTS = {"desanet-hn": desanet_hn, "desanet-rn": desanet_rn}


def build_model(variant: str, **kwargs: object) -> DESANet:
    from edgeseg.errors import EdgesegError

    if variant not in VARIANTS:
        raise EdgesegError(f"unknown model '{variant}': expected one of {', '.join(VARIANTS)}")
    return VARIANTS[variant](**kwargs)  # type: ignore[arg-type]
