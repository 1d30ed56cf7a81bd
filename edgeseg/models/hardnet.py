"""HarDNet-68ds (Chao et al., ICCV 2019) as DESANet's context path.

Module names follow the official implementation (``base.{i}`` with ``layers.{k}.layer1/layer2``
inside each harmonic dense block), so the ImageNet checkpoint ``hardnet68ds-632474d2.pth``
loads with strict key matching. DESANet keeps ``base[0:14]``: the last harmonic dense block,
its 1x1 transition and the classifier are dropped (paper section 3.1).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ConvLayer", "DWConvLayer", "CombConvLayer", "HarDBlock", "HarDNet68ds", "hdb_links"]

# HarDNet-68 stage settings (DESIGN.md section 3).
FIRST_CH = (32, 64)
CH_LIST = (128, 256, 320, 640, 1024)
GROWTH = (14, 16, 20, 40, 160)
N_LAYERS = (8, 16, 16, 16, 4)
DOWNSAMPLE = (1, 0, 1, 1, 0)
GRMUL = 1.7


class ConvLayer(nn.Sequential):
    """conv -> BN -> ReLU6 (HarDNet's ConvLayer)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.add_module("conv", nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False))
        self.add_module("norm", nn.BatchNorm2d(cout))
        self.add_module("relu", nn.ReLU6(inplace=True))


class DWConvLayer(nn.Sequential):
    """Depthwise 3x3 -> BN, no activation (the ds variant's down-sampler and HDB second half)."""

    def __init__(self, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.add_module(
            "dwconv", nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False)
        )
        self.add_module("norm", nn.BatchNorm2d(channels))


class CombConvLayer(nn.Sequential):
    """A harmonic layer of the ds variant: 1x1 ConvLayer then depthwise 3x3."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.add_module("layer1", ConvLayer(cin, cout, kernel=1))
        self.add_module("layer2", DWConvLayer(cout))


def hdb_links(k: int, base_ch: int, growth: int, grmul: float) -> tuple[int, int, list[int]]:
    """Harmonic link rule: layer k reads layers k - 2^i for every 2^i dividing k.

    Returns (out_channels, in_channels, links). Out channels grow by grmul per extra link and
    are rounded to an even number, as in the reference.
    """
    if k == 0:
        return base_ch, 0, []
    links = [k - 2**i for i in range(10) if k % 2**i == 0 and k - 2**i >= 0]
    out = growth * grmul ** (len(links) - 1)
    out_ch = int(int(out + 1) / 2) * 2
    in_ch = sum(hdb_links(j, base_ch, growth, grmul)[0] for j in links)
    return out_ch, in_ch, links


class HarDBlock(nn.Module):
    """Harmonic dense block; output = concat of the odd layers and the last layer."""

    def __init__(self, cin: int, growth: int, grmul: float, n_layers: int) -> None:
        super().__init__()
        self.links: list[list[int]] = []
        layers = []
        self.out_channels = 0
        for i in range(n_layers):
            out_ch, in_ch, link = hdb_links(i + 1, cin, growth, grmul)
            self.links.append(link)
            layers.append(CombConvLayer(in_ch, out_ch))
            if i % 2 == 0 or i == n_layers - 1:
                self.out_channels += out_ch
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for link, layer in zip(self.links, self.layers):
            inp = feats[link[0]] if len(link) == 1 else torch.cat([feats[j] for j in link], 1)
            feats.append(layer(inp))
        t = len(feats)
        return torch.cat([feats[i] for i in range(t) if i == t - 1 or i % 2 == 1], 1)


class HarDNet68ds(nn.Module):
    """HarDNet-68ds trunk; ``drop_last_block=True`` keeps base[0:14] (DESANet's context path).

    ``forward`` returns the features at 1/4, 1/8, 1/16 and 1/32 of the input.
    Channels (truncated): 128, 320, 640, 640.
    """

    # base indices whose outputs are the 1/4, 1/8, 1/16 and 1/32 features
    TAPS = (4, 9, 12, 13)

    def __init__(self, drop_last_block: bool = True) -> None:
        super().__init__()
        base: list[nn.Module] = [
            ConvLayer(3, FIRST_CH[0], kernel=3, stride=2),
            ConvLayer(FIRST_CH[0], FIRST_CH[1], kernel=1),
            DWConvLayer(FIRST_CH[1], stride=2),
        ]
        ch = FIRST_CH[1]
        for i, n in enumerate(N_LAYERS):
            blk = HarDBlock(ch, GROWTH[i], GRMUL, n)
            base += [blk, ConvLayer(blk.out_channels, CH_LIST[i], kernel=1)]
            ch = CH_LIST[i]
            if DOWNSAMPLE[i]:
                base.append(DWConvLayer(ch, stride=2))
        if drop_last_block:
            base = base[:14]
        self.base = nn.ModuleList(base)
        self.channels = (CH_LIST[0], CH_LIST[2], CH_LIST[3], CH_LIST[3])

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        for i, m in enumerate(self.base):
            x = m(x)
            if i in self.TAPS:
                feats.append(x)
        return feats
