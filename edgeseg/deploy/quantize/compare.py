"""FP32 vs INT8 on held-out images: pixel agreement, mIoU and per-class IoU deltas, latency.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseg.deploy.quantize.images import load_label, read_bgr

if TYPE_CHECKING:
    from edgeseg.runtime.base import Segmenter

__all__ = ["DEFAULT_RUNS", "compare_models"]

DEFAULT_RUNS = 10


def compare_models(
    fp32: Segmenter,
    int8: Segmenter,
    held_out: Sequence[Path],
    labels: dict[Path, tuple[Path, bool]] | None = None,
    *,
    runs: int = DEFAULT_RUNS,
    on_image: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Agreement of the argmax, mIoU of both (where labels exist) and latency of both.

    Agreement counts pixels at the network's output size; mIoU uses each backend's own
    postprocess (labels resized to the label's size), as `edgeseg eval` does. Latency is the
    median of ``runs`` inferences of each model on the same tensor, alternated so that a noisy
    machine slows both alike, after two warm-up runs each.
    """
    from edgeseg.metrics import ConfusionMatrix

    classes = list(fp32.meta.classes)
    cm32, cm8 = ConfusionMatrix(len(classes)), ConfusionMatrix(len(classes))
    same = total = 0
    per_image: list[float] = []
    labelled = 0
    first: np.ndarray | None = None
    for path in held_out:
        bgr = read_bgr(path)
        x = fp32.preprocess(bgr)
        first = x if first is None else first
        out32, out8 = fp32.infer(x), int8.infer(x)
        lab32 = out32 if out32.ndim == 3 else out32.argmax(1)
        lab8 = out8 if out8.ndim == 3 else out8.argmax(1)
        eq = int((lab32 == lab8).sum())
        same, total = same + eq, total + lab32.size
        per_image.append(eq / lab32.size)
        if labels and path in labels:
            gt = load_label(*labels[path], shape=bgr.shape[:2])
            cm32.update(fp32.postprocess(out32, gt.shape), gt)
            cm8.update(int8.postprocess(out8, gt.shape), gt)
            labelled += 1
        if on_image:
            on_image()
    report: dict[str, Any] = {
        "agreement": same / total if total else None,
        "agreement_min_image": min(per_image) if per_image else None,
        "held_out_images": len(held_out),
        "labelled_images": labelled,
        "miou_fp32": None, "miou_int8": None, "miou_delta": None, "iou_delta_per_class": None,
        "iou_per_class_fp32": None, "iou_per_class_int8": None,
    }
    if labelled:
        s32, s8 = cm32.summary(classes), cm8.summary(classes)
        report.update(
            miou_fp32=s32["miou"], miou_int8=s8["miou"], miou_delta=s8["miou"] - s32["miou"],
            iou_per_class_fp32=s32["iou_per_class"], iou_per_class_int8=s8["iou_per_class"],
            iou_delta_per_class={
                c: (None if s32["iou_per_class"][c] is None or s8["iou_per_class"][c] is None
                    else s8["iou_per_class"][c] - s32["iou_per_class"][c])
                for c in classes
            },
        )
    if first is None:
        x = np.zeros((1, 3, *fp32.meta.input_hw), np.float32)
    else:
        x = first
    report.update(_latency(fp32, int8, x, runs) if runs > 0 else
                  {"latency_ms_fp32": None, "latency_ms_int8": None, "speedup": None})
    return report


def _latency(a: Segmenter, b: Segmenter, x: np.ndarray, runs: int) -> dict[str, Any]:
    for _ in range(2):
        a.infer(x)
        b.infer(x)
    ta: list[float] = []
    tb: list[float] = []
    for i in range(runs):
        for seg, times in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
            t0 = time.perf_counter()
            seg.infer(x)
            times.append(time.perf_counter() - t0)
    ma, mb = float(np.median(ta)) * 1e3, float(np.median(tb)) * 1e3
    return {"latency_ms_fp32": ma, "latency_ms_int8": mb, "speedup": ma / mb if mb else None,
            "latency_runs": runs}
