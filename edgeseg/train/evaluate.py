"""Evaluation: one confusion matrix over a whole split (Cityscapes convention), per-class IoU,
mIoU and pixel accuracy; optional submission PNGs in Cityscapes label ids."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.metrics import ConfusionMatrix

__all__ = ["evaluate", "evaluate_model", "evaluate_segmenter"]


def evaluate_segmenter(
    predict: Callable[[np.ndarray], np.ndarray],
    items: Iterable[tuple[np.ndarray, np.ndarray, Path | None]],
    classes: list[str],
    *,
    save_pred: Path | None = None,
    on_image: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run ``predict(rgb) -> train-id labels`` over (rgb, train-id mask, image path) items."""
    import cv2

    from edgeseg.data.cityscapes import train_ids_to_ids

    cm = ConfusionMatrix(len(classes))
    n = 0
    if save_pred is not None:
        save_pred.mkdir(parents=True, exist_ok=True)
    for rgb, mask, path in items:
        pred = predict(rgb)
        cm.update(pred, mask)
        n += 1
        if save_pred is not None and path is not None:
            # Cityscapes submissions: label ids, named after the input image
            cv2.imwrite(str(save_pred / path.name), train_ids_to_ids(pred).astype(np.uint8))
        if on_image:
            on_image()
    return {**cm.summary(classes), "images": n}


def evaluate_model(model: Any, dataset: Any, classes: list[str], device: str = "cpu") -> dict:
    """mIoU of a torch model (eval mode) over a CityscapesDataset, at full image size."""
    import torch

    from edgeseg.data import MEAN, STD

    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255
    was_training = model.training
    model.eval()

    def predict(rgb: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(rgb).to(device).permute(2, 0, 1)[None].float()
        with torch.inference_mode():
            out = model((x - mean) / std)
        return out.argmax(1)[0].to(torch.uint8).cpu().numpy()

    items = ((*dataset.load(i), dataset.image_path(i)) for i in range(len(dataset)))
    try:
        return evaluate_segmenter(predict, items, classes)
    finally:
        model.train(was_training)


def evaluate(
    weights: str | Path,
    data: str | Path,
    split: str = "val",
    save_pred: str | Path | None = None,
    *,
    on_image: Callable[..., Any] | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Library entry of `edgeseg eval`: one confusion matrix of a model (any artifact) over a
    Cityscapes-layout split; ``on_image(1)`` after each image. A checkpoint runs on
    ``device`` (:func:`~edgeseg.runtime.devices.parse_device`; auto: CUDA when torch sees a
    GPU, with the argmax there); an ONNX or engine in its own backend."""
    from edgeseg.artifacts.files import artifact_kind
    from edgeseg.data.cityscapes import CityscapesDataset
    from edgeseg.errors import EdgesegError
    from edgeseg.runtime import open_segmenter
    from edgeseg.runtime.devices import parse_device

    dev = parse_device(device)
    dataset = CityscapesDataset(data, split)
    if artifact_kind(weights) == "checkpoint":
        seg = open_segmenter(weights, device=str(dev), argmax=dev.type == "cuda")
    elif device != "auto":
        raise EdgesegError(f"--device applies to checkpoints (.pt); {Path(weights).name} runs "
                           "in its own backend")
    else:
        seg = open_segmenter(weights)
    items = ((*dataset.load(i), dataset.image_path(i)) for i in range(len(dataset)))
    return evaluate_segmenter(
        lambda rgb: seg(rgb[:, :, ::-1], native_size=True), items, list(seg.meta.classes),
        save_pred=Path(save_pred) if save_pred is not None else None, on_image=on_image,
    )
