"""Context-path trunks with ImageNet-checkpoint-compatible module names, and their loader.

``--backbone-weights PATH`` loads the official checkpoints (HarDNet-68ds:
hardnet68ds-632474d2.pth, keys ``base.{i}...``; ResNet-18: torchvision's resnet18 state dict)
with strict key and shape checks: a mismatch is one line naming the file and the first keys.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from edgeseg.errors import EdgesegError
from edgeseg.models.hardnet import HarDNet68ds

__all__ = ["ResNet18Backbone", "hardnet68ds_backbone", "resnet18_backbone", "load_backbone_weights"]


class ResNet18Backbone(nn.Module):
    """torchvision's ResNet-18 without avgpool/fc; attribute names equal torchvision's."""

    channels = (64, 128, 256, 512)

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet18

        r = resnet18(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = r.conv1, r.bn1, r.relu, r.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f4 = self.layer1(x)
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        return [f4, f8, f16, self.layer4(f16)]


# Checkpoint keys that belong to parts DESANet drops: the classifier (and for HarDNet the last
# harmonic dense block and its transition, base.14-16).
_DROPPED = {
    "hardnet68ds": ("base.14.", "base.15.", "base.16."),
    "resnet18": ("fc.",),
}


def hardnet68ds_backbone(weights: str | Path | None = None) -> HarDNet68ds:
    net = HarDNet68ds(drop_last_block=True)
    if weights:
        load_backbone_weights(net, weights, "hardnet68ds")
    return net


def resnet18_backbone(weights: str | Path | None = None) -> ResNet18Backbone:
    net = ResNet18Backbone()
    if weights:
        load_backbone_weights(net, weights, "resnet18")
    return net


def load_backbone_weights(net: nn.Module, path: str | Path, arch: str) -> None:
    """Strictly load an ImageNet checkpoint into ``net`` (keys and shapes must match)."""
    path = Path(path)
    if not path.is_file():
        raise EdgesegError(f"backbone weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise EdgesegError(f"{path}: not a PyTorch state dict ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise EdgesegError(f"{path}: expected a state dict, got {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(_DROPPED[arch])}
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = [
        f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", bad_shape)):
        if items:
            more = f" (+{len(items) - 1} more)" if len(items) > 1 else ""
            raise EdgesegError(
                f"{path}: backbone weights do not match {arch}: {label} key {items[0]}{more}"
            )
    net.load_state_dict(state, strict=True)
