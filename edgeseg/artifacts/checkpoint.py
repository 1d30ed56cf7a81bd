"""Reading edgeseg checkpoints: the file format, the model they hold and its metadata.

Writing (with optimizer, RNG and resume state) belongs to :mod:`edgeseg.train.checkpoint`;
reading is needed by every layer above (runtime, deploy, bench), so it lives here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeseg.artifacts.meta import ModelMeta
from edgeseg.errors import EdgesegError

if TYPE_CHECKING:
    import torch

__all__ = ["FORMAT", "default_meta", "file_sha256", "load_checkpoint", "load_model"]

FORMAT = "edgeseg-checkpoint/1"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    import torch

    path = Path(path)
    if not path.is_file():
        raise EdgesegError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated or foreign files
        raise EdgesegError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise EdgesegError(f"{path}: not an edgeseg checkpoint (expected format {FORMAT})")
    return ckpt


def load_model(path: str | Path, *, dcn_impl: str = "auto") -> tuple[torch.nn.Module, ModelMeta]:
    """Rebuild the model of a checkpoint in eval mode, with its metadata."""
    from edgeseg.models.desanet import build_model

    ckpt = load_checkpoint(path)
    meta = ModelMeta.from_dict(ckpt["meta"])
    model = build_model(meta.variant, num_classes=len(meta.classes), aux=False, dcn_impl=dcn_impl)
    state = {k: v for k, v in ckpt["model"].items() if not k.startswith("aux_head.")}
    model.load_state_dict(state, strict=True)
    meta.extra.setdefault("checkpoint_sha256", file_sha256(path))
    return model.eval(), meta


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_meta(variant: str, input_hw: tuple[int, int]) -> ModelMeta:
    """Metadata of a Cityscapes-trained (19-class) model with ImageNet normalisation."""
    from edgeseg.data import MEAN, STD
    from edgeseg.data.cityscapes import CLASSES, PALETTE

    return ModelMeta(
        variant=variant,
        classes=list(CLASSES),
        palette=list(PALETTE),
        mean=MEAN,
        std=STD,
        input_hw=input_hw,
    )
