"""DESANet's building blocks, named as in the paper (Chang et al., Sensors 2021, section 3).

Every module is small and stateless apart from its layers; widths are constructor arguments
so desanet.py can state the chosen configuration in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeseg.models.deform import DcnImpl, DeformableConv2d

__all__ = [
    "ConvBNReLU",
    "StripPooling",
    "SCSE",
    "SpatialPath",
    "RefinementModule",
    "FASPPM",
    "FeatureFusionModule",
    "SkipConnection",
    "SegHead",
]


def _pad(kernel: tuple[int, int], dilation: int) -> tuple[int, int]:
    return (dilation * (kernel[0] // 2), dilation * (kernel[1] // 2))


class ConvBNReLU(nn.Sequential):
    """conv (no bias) -> BN -> ReLU; ``kernel`` may be (kh, kw) for factorised convs."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int | tuple[int, int] = 3,
        stride: int = 1,
        dilation: int = 1,
        relu: bool = True,
    ) -> None:
        k = (kernel, kernel) if isinstance(kernel, int) else kernel
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride, _pad(k, dilation), dilation, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class StripPooling(nn.Module):
    """Strip-pooling attention (Hou et al., CVPR 2020), paper eq. (1).

    Averages each row (H x 1) and each column (1 x W), runs a 3x1 and a 1x3 conv with BN,
    expands both back to H x W, sums, ReLU, 1x1 conv + BN, sigmoid. Returns the attention
    map; the caller multiplies. Means over one axis export to ONNX ReduceMean for any size.
    """

    def __init__(self, channels: int, out_channels: int | None = None) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.conv_h = ConvBNReLU(channels, channels, (3, 1), relu=False)
        self.conv_w = ConvBNReLU(channels, channels, (1, 3), relu=False)
        self.fuse = ConvBNReLU(channels, out_channels, 1, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        yh = self.conv_h(x.mean(dim=3, keepdim=True))  # (N, C, H, 1)
        yv = self.conv_w(x.mean(dim=2, keepdim=True))  # (N, C, 1, W)
        s = F.relu(yh.expand(-1, -1, h, w) + yv.expand(-1, -1, h, w))
        return torch.sigmoid(self.fuse(s))


class SCSE(nn.Module):
    """Concurrent spatial and channel squeeze & excitation (Roy et al. 2018): x*cSE + x*sSE."""

    def __init__(self, channels: int, reduction: int = 2) -> None:
        super().__init__()
        self.cse = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )
        self.sse = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.cse(x) + x * self.sse(x)


class SpatialPath(nn.Module):
    """Three stride-2 CBRs (the first 7x7) to 1/8, a 1x1 to ``out_channels``, a deformable
    3x3 conv (+BN+ReLU) and scSE. Also returns the 1/4 feature for the skip connection."""

    def __init__(
        self, mid_channels: int = 64, out_channels: int = 128, dcn_impl: DcnImpl = "auto"
    ) -> None:
        super().__init__()
        self.conv7x7 = ConvBNReLU(3, mid_channels, 7, stride=2)
        self.conv2 = ConvBNReLU(mid_channels, mid_channels, 3, stride=2)
        self.conv3 = ConvBNReLU(mid_channels, mid_channels, 3, stride=2)
        self.proj = ConvBNReLU(mid_channels, out_channels, 1)
        self.deform = DeformableConv2d(out_channels, out_channels, 3, padding=1, impl=dcn_impl)
        self.deform_bn = nn.BatchNorm2d(out_channels)
        self.scse = SCSE(out_channels)
        self.low_channels = mid_channels
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        low = self.conv2(self.conv7x7(x))  # 1/4
        x = self.proj(self.conv3(low))  # 1/8
        x = F.relu(self.deform_bn(self.deform(x)))
        return self.scse(x), low


class RefinementModule(nn.Module):
    """BiSeNet's attention refinement module with strip pooling instead of global pooling
    (paper section 3.2, Fig. 3): 3x3 CBR, then features * strip-pooling attention."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, cout, 3)
        self.attention = StripPooling(cout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return x * self.attention(x)


class FASPPM(nn.Module):
    """Factorised atrous spatial pyramid pooling module (paper section 3.3, Fig. 4).

    ASPP whose 3x3 atrous convs are factorised into 3x1 atrous -> BN -> ReLU -> 1x3 atrous ->
    BN -> ReLU; the image-pooling branch is replaced by strip pooling, whose output multiplies
    the 1x1 projection of the concatenation; the module input is added back (residual).
    """

    def __init__(self, channels: int, mid_channels: int, rates: Sequence[int] = (6, 12, 18)):
        super().__init__()
        self.branches = nn.ModuleList([ConvBNReLU(channels, mid_channels, 1)])
        for r in rates:
            self.branches.append(
                nn.Sequential(
                    ConvBNReLU(channels, mid_channels, (3, 1), dilation=r),
                    ConvBNReLU(mid_channels, mid_channels, (1, 3), dilation=r),
                )
            )
        self.project = ConvBNReLU(mid_channels * (len(rates) + 1), channels, 1)
        self.strip = StripPooling(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(torch.cat([b(x) for b in self.branches], dim=1))
        return y * self.strip(x) + x


class FeatureFusionModule(nn.Module):
    """BiSeNet FFM: concat spatial and context features, 1x1 CBR, channel attention, x*a + x."""

    def __init__(self, cin: int, cout: int, reduction: int = 4) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, cout, 1)
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(cout, cout // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout // reduction, cout, 1),
            nn.Sigmoid(),
        )

    def forward(self, sp: Tensor, cp: Tensor) -> Tensor:
        x = self.conv(torch.cat([sp, cp], dim=1))
        return x * self.attention(x) + x


class SkipConnection(nn.Module):
    """The single skip: concat the low-level context and spatial features (1/4), then three
    atrous 3x3 CBRs with dilation 1, 3, 6 (paper section 3.1). Few channels: at 1/4 every
    3x3 channel costs (DESIGN.md section 3)."""

    def __init__(self, cin: int, channels: int, dilations: Sequence[int] = (1, 3, 6)) -> None:
        super().__init__()
        layers = []
        for d in dilations:
            layers.append(ConvBNReLU(cin, channels, 3, dilation=d))
            cin = channels
        self.atrous = nn.Sequential(*layers)

    def forward(self, cp_low: Tensor, sp_low: Tensor) -> Tensor:
        return self.atrous(torch.cat([cp_low, sp_low], dim=1))


class SegHead(nn.Module):
    """3x3 CBR then a 1x1 classifier (BiSeNet's output head); also the auxiliary head."""

    def __init__(self, cin: int, mid: int, num_classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, mid, 3)
        self.classifier = nn.Conv2d(mid, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.conv(x))
