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

__all__ = [
    "FORMAT", "check_variant", "checkpoint_variant", "default_meta", "file_sha256",
    "load_checkpoint", "load_model", "load_state",
]

FORMAT = "edgeseg-checkpoint/1"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    import torch

    path = Path(path)
    if not path.is_file():
        raise EdgesegError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated or foreign files
        raise EdgesegError(f"{path}: not a readable checkpoint ({_load_failure(e)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise EdgesegError(f"{path}: not an edgeseg checkpoint (expected format {FORMAT})")
    return ckpt


def _load_failure(e: Exception) -> str:
    """One line for torch.load's multi-paragraph errors."""
    import pickle
    import zipfile

    text = str(e)
    if isinstance(e, (pickle.UnpicklingError, zipfile.BadZipFile)) or "invalid load key" in text:
        return "not a file written by torch.save"
    if "zip archive" in text or "central directory" in text or isinstance(e, EOFError):
        return "truncated or corrupt: the zip archive cannot be read"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(e).__name__}: {first[:160]}"


def checkpoint_variant(ckpt: dict[str, Any]) -> str | None:
    """The DESANet variant a checkpoint holds (its metadata, else its run config)."""
    meta, config = ckpt.get("meta"), ckpt.get("config")
    if isinstance(meta, dict) and meta.get("variant"):
        return str(meta["variant"])
    if isinstance(config, dict) and config.get("model"):
        return str(config["model"])
    return None


def check_variant(ckpt: dict[str, Any], variant: str, path: str | Path) -> None:
    """One line instead of hundreds of missing keys when ``--model`` and the checkpoint differ."""
    held = checkpoint_variant(ckpt)
    if held is not None and held != variant:
        raise EdgesegError(
            f"{path} holds {held} weights, not {variant}: pass --model {held} "
            f"(or start {variant} without --resume)"
        )


def load_state(model: torch.nn.Module, state: Any, path: str | Path) -> None:
    """``load_state_dict(strict=True)`` whose mismatch is one line naming the first keys."""
    if not isinstance(state, dict):
        raise EdgesegError(f"{path}: the checkpoint's model entry is not a state dict")
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        first = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e))
        raise EdgesegError(f"{path}: weights do not fit the model ({first})") from None
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})"] if missing else []
        parts += [f"{len(unexpected)} unexpected (e.g. {unexpected[0]})"] if unexpected else []
        raise EdgesegError(f"{path}: weights do not fit the model: {', '.join(parts)} keys")


def load_model(path: str | Path, *, dcn_impl: str = "auto") -> tuple[torch.nn.Module, ModelMeta]:
    """Rebuild the model of a checkpoint in eval mode, with its metadata."""
    from edgeseg.models.desanet import build_model

    ckpt = load_checkpoint(path)
    if not isinstance(ckpt.get("meta"), dict) or not isinstance(ckpt.get("model"), dict):
        raise EdgesegError(f"{path}: checkpoint without model weights and metadata")
    try:
        meta = ModelMeta.from_dict(ckpt["meta"])
    except (KeyError, TypeError, ValueError) as e:
        raise EdgesegError(f"{path}: unreadable model metadata ({type(e).__name__}: {e})") from None
    model = build_model(meta.variant, num_classes=len(meta.classes), aux=False, dcn_impl=dcn_impl)
    state = {k: v for k, v in ckpt["model"].items() if not k.startswith("aux_head.")}
    load_state(model, state, path)
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
