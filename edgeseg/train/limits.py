"""The smallest training crop, stated up front instead of a traceback at the first step.

Two limits, both computed from the model and the loss rather than found by trial:

* BatchNorm in training needs more than one value per channel. The smallest maps are at the
  context path's deepest stride (1/32): each stride-2 conv (k3, p1) maps n to ceil(n / 2), and
  the refinement module's strip pooling reduces that map to H x 1 and 1 x W before a BN, so a
  batch of B crops gives ``B * min(ceil(H / 32), ceil(W / 32))`` values per channel.
* RMI (``rmi: true``) average-pools by ``pool_size`` (padding ``pool_size // 2``) and needs a
  ``radius x radius`` neighbourhood in the pooled map: ``H // pool_size + 1 >= radius``.
"""

from __future__ import annotations

import math
from typing import Any

from edgeseg.errors import EdgesegError

__all__ = ["CONTEXT_STRIDE", "check_crop", "min_crop"]

CONTEXT_STRIDE = 32  # the deepest feature of both backbones (HarDNet-68ds, ResNet-18)


def _rmi() -> tuple[int, int, int]:
    """(smallest side, pool_size, radius) of the RMI term, from the loss's own defaults."""
    from edgeseg.train.losses import RMILoss

    rmi = RMILoss(2)
    k, r = rmi.pool_size, rmi.radius
    return (k * (r - 1) if k > 1 else r), k, r


def _rmi_min_side() -> int:
    return _rmi()[0]


def min_crop(batch: int, rmi: bool) -> int:
    """The smallest side a crop may have for ``batch`` crops per step (and RMI on or off)."""
    side = 1 if batch > 1 else CONTEXT_STRIDE + 1
    return max(side, _rmi_min_side()) if rmi else side


def bn_values_per_channel(crop: tuple[int, int], batch: int) -> int:
    h, w = (math.ceil(s / CONTEXT_STRIDE) for s in crop)
    return batch * min(h, w)


def check_crop(cfg: Any) -> None:
    """Raise a one-line :class:`EdgesegError` when ``cfg.crop`` cannot be trained on."""
    h, w = cfg.crop
    if cfg.rmi:
        need, k, r = _rmi()
        if min(h, w) < need:
            raise EdgesegError(
                f"crop {h}x{w} is too small for the RMI loss (it pools the map by {k} and needs "
                f"a {r}x{r} neighbourhood): use a crop of at least {need}x{need}, or --no-rmi"
            )
    if bn_values_per_channel((h, w), cfg.batch) < 2:
        need = CONTEXT_STRIDE + 1
        raise EdgesegError(
            f"crop {h}x{w} with batch {cfg.batch} is too small: BatchNorm needs more than one "
            f"value per channel in training and the 1/{CONTEXT_STRIDE} feature map would be "
            f"{math.ceil(h / CONTEXT_STRIDE)}x{math.ceil(w / CONTEXT_STRIDE)}; use a crop of at "
            f"least {need}x{need} or --batch 2"
        )
