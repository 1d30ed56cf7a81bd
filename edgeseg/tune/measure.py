"""Measure one configuration: build its model, time it with the bench, score its accuracy.

* **Models** (:class:`Builder`): the FP32 ONNX at the configuration's size and deformable-conv
  form, exported from the checkpoint (:func:`edgeseg.deploy.onnx.export_onnx`), or the given
  ONNX; the INT8 Q/DQ ONNX calibrated from it by :func:`edgeseg.deploy.quantize.calibrate`.
  Files are kept in the tune's artifact folder, named after the model's hash, and reused.
* **Speed**: :func:`edgeseg.bench.report.run_bench` on that ONNX with onnxruntime and the
  configuration's threads: network FPS (``fps``: the target is met on it, like the roofline
  it is pruned on), end-to-end FPS, p99 latency, peak RSS, power and energy where a sensor
  exists.
* **Accuracy** (:func:`accuracy`) against the FP32 full-resolution reference on the given
  images: pixel agreement of the predictions, and with labels the mIoU drop in points, every
  prediction upsampled (nearest) to the label size.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.atomic import publish
from edgeseg.errors import EdgesegError
from edgeseg.tune.space import TuneConfig

__all__ = ["Builder", "EvalSet", "accuracy", "load_eval_set", "speed"]

Step = Callable[[str], None]


@dataclass
class EvalSet:
    """Images (BGR uint8) the accuracy is measured on, their labels (train ids) when known,
    and where INT8 calibration images come from."""

    frames: list[np.ndarray]
    labels: list[np.ndarray] | None
    calibration: Path  # a folder / Cityscapes root for calibrate(images=...)
    source: str

    @property
    def has_labels(self) -> bool:
        return self.labels is not None


def load_eval_set(data: str | Path | None, images: str | Path | None, n: int,
                  reference_hw: tuple[int, int], workdir: Path) -> EvalSet:
    """``--data`` (Cityscapes layout, val split, with labels), ``--frames`` (no labels), or
    ``n`` synthetic street scenes at ``reference_hw`` written to ``workdir`` (no labels)."""
    if data is not None and images is not None:
        raise EdgesegError("give --data or --frames, not both")
    if n < 1:
        raise EdgesegError(f"--eval-images must be >= 1, got {n}")
    if data is not None:
        from edgeseg.data.cityscapes import CityscapesDataset

        root = Path(data)
        if not root.is_dir():
            raise EdgesegError(f"--data folder not found: {root}")
        ds = CityscapesDataset(root, "val")
        if len(ds) == 0:
            raise EdgesegError(f"--data {root}: no val images")
        frames, labels = [], []
        for i in range(min(n, len(ds))):
            rgb, mask = ds.load(i)
            frames.append(np.ascontiguousarray(rgb[:, :, ::-1]))
            labels.append(np.asarray(mask))
        return EvalSet(frames, labels, root, f"{root} (val, {len(frames)} images)")
    if images is not None:
        from edgeseg.deploy.quantize.images import find_images, read_bgr

        found = find_images(images)
        pool = found.eval_pool or found.pool
        frames = [read_bgr(p) for p in pool[:n]]
        return EvalSet(frames, None, Path(images), f"{images} ({len(frames)} images)")
    import cv2

    from edgeseg.bench.sources import synthetic_frame

    folder = workdir / f"synthetic-{reference_hw[0]}x{reference_hw[1]}"
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(max(n, 8)):
        f = synthetic_frame(*reference_hw, seed=1000 + i)
        path = folder / f"scene{i:03d}.png"
        if not path.exists():
            cv2.imwrite(str(path), f)
        if i < n:
            frames.append(f)
    return EvalSet(frames, None, folder, f"{len(frames)} synthetic scenes (no labels)")


class Builder:
    """The ONNX files of the configurations, made on demand and kept in ``folder``.

    ``weights``: a checkpoint (any size, both deformable-conv forms); ``onnx``: a given FP32
    ONNX (its own size, or any with a dynamic one; its own deformable-conv form).
    """

    def __init__(self, folder: Path, *, weights: Path | None, onnx: Path | None,
                 calibration: Path, calib_images: int, step: Step) -> None:
        from edgeseg.artifacts.checkpoint import file_sha256

        self.folder, self.weights, self.given = folder, weights, onnx
        self.calibration, self.calib_images, self.step = calibration, calib_images, step
        src = weights or onnx
        assert src is not None
        self.sha = file_sha256(src)
        self._model: Any = None
        if onnx is not None:
            from edgeseg.artifacts.files import read_onnx_metadata

            self.meta = read_onnx_metadata(onnx)
            if self.meta.precision != "fp32":
                raise EdgesegError(f"--model {onnx.name} is {self.meta.precision}; tune needs the "
                                   "FP32 ONNX (it builds INT8 itself)")
        else:
            from edgeseg.artifacts.checkpoint import load_model

            step(f"loading {weights.name}")  # type: ignore[union-attr]
            self._model, self.meta = load_model(weights)  # type: ignore[arg-type]
            self._model.eval()

    @property
    def variant(self) -> str:
        return str(self.meta.variant)

    @property
    def own_hw(self) -> tuple[int, int]:
        return int(self.meta.input_hw[0]), int(self.meta.input_hw[1])

    @property
    def dynamic(self) -> bool:
        return self.given is not None and bool(self.meta.extra.get("dynamic"))

    @property
    def own_dcn(self) -> str | None:
        return str(self.meta.extra.get("dcn", "native")) if self.given is not None else None

    def unsupported(self, c: TuneConfig) -> str | None:
        """Why this source cannot give ``c`` a model, or None."""
        if self.given is None:
            return None
        name = self.given.name
        if c.dcn != self.own_dcn:
            return f"{name} has the {self.own_dcn} deformable conv (give a checkpoint for both)"
        if c.hw != self.own_hw and not (self.dynamic and c.precision == "fp32"):
            return (f"{name} is fixed at {self.own_hw[0]}x{self.own_hw[1]} (export it with "
                    "--dynamic, or give a checkpoint)" if not self.dynamic else
                    f"int8 is calibrated at {name}'s own size only (give a checkpoint)")
        return None

    def path(self, c: TuneConfig) -> Path:
        return self.folder / (f"{self.variant}-{self.sha[:8]}-{c.height}x{c.width}-"
                              f"{c.dcn}-{c.precision}.onnx")

    def onnx(self, c: TuneConfig) -> Path:
        """The ONNX for ``c`` (built now unless already there)."""
        from dataclasses import replace

        if self.given is not None and c.precision == "fp32":
            return self.given
        out = self.path(c)
        if out.is_file():
            return out
        self.folder.mkdir(parents=True, exist_ok=True)
        if c.precision == "int8":
            fp32 = self.onnx(replace(c, precision="fp32"))
            self._quantize(fp32, out, c)
        elif c.precision == "fp32":
            from edgeseg.deploy.onnx import export_onnx

            self.step(f"exporting {out.name}")
            export_onnx(self._model, self.meta, out, height=c.height, width=c.width,
                        dcn=c.dcn, parity=False)
        else:
            raise EdgesegError(f"onnxruntime {c.precision} is not built by tune")
        return out

    def _quantize(self, fp32: Path, out: Path, c: TuneConfig) -> None:
        from edgeseg.deploy.quantize import QDQ_NAME, calibrate

        self.step(f"calibrating {out.name} ({self.calib_images} images)")
        qdir = Path(tempfile.mkdtemp(prefix=".calibrate-", dir=self.folder))
        try:
            calibrate(images=self.calibration, out=qdir / "q", onnx=fp32, profile="x86-cpu",
                      num=self.calib_images, holdout=0, runs=0, threads=c.threads)
            publish(qdir / "q" / QDQ_NAME, out)
        finally:
            shutil.rmtree(qdir, ignore_errors=True)

    def segmenter(self, c: TuneConfig) -> Any:
        from edgeseg.runtime import open_segmenter

        path = self.onnx(c)
        opts: dict[str, Any] = {"threads": c.threads}
        if self.dynamic and path == self.given:
            opts["input_hw"] = c.hw
        return open_segmenter(path, backend="onnxruntime", **opts)


def predict(seg: Any, frames: Sequence[np.ndarray],
            labels: Sequence[np.ndarray] | None) -> list[np.ndarray]:
    """Train-id predictions at each label's size (else the frame's)."""
    import cv2

    out = []
    for i, f in enumerate(frames):
        pred = seg(f)
        if labels is not None and pred.shape != labels[i].shape:
            h, w = labels[i].shape
            pred = cv2.resize(pred, (w, h), interpolation=cv2.INTER_NEAREST)
        out.append(pred)
    return out


def miou(preds: Sequence[np.ndarray], labels: Sequence[np.ndarray], classes: int) -> float:
    from edgeseg.metrics import ConfusionMatrix

    cm = ConfusionMatrix(classes)
    for p, t in zip(preds, labels):
        cm.update(p, t)
    iou = cm.iou()
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0


def accuracy(preds: Sequence[np.ndarray], reference: Sequence[np.ndarray],
             labels: Sequence[np.ndarray] | None, classes: int,
             reference_miou: float | None) -> dict[str, Any]:
    """``agreement`` (share of pixels equal to the reference's), and with labels ``miou`` and
    ``miou_drop`` (reference mIoU - this mIoU, in points)."""
    same = sum(int(np.count_nonzero(p == r)) for p, r in zip(preds, reference))
    total = sum(int(r.size) for r in reference)
    out: dict[str, Any] = {"agreement": same / total, "miou": None, "miou_drop": None}
    if labels is not None and reference_miou is not None:
        m = miou(preds, labels, classes)
        out.update(miou=m, miou_drop=100.0 * (reference_miou - m))
    return out


def speed(onnx: Path, c: TuneConfig, profile: Any, *, duration_s: float | None,
          warmup_s: float | None, reference_s: float, input_hw: tuple[int, int] | None,
          step: Step | None = None) -> dict[str, Any]:
    """The bench's figures for ``c`` (one round, onnxruntime at ``c.threads``)."""
    from edgeseg.bench.report import run_bench

    hw = input_hw or (None, None)
    r = run_bench(onnx=onnx, backend="onnxruntime", precision=c.precision, profile=profile,
                  threads=c.threads, height=hw[0], width=hw[1], duration_s=duration_s,
                  warmup_s=warmup_s, min_warmup=3, rounds=1, reference_s=reference_s,
                  step=step)
    rss = (r.get("memory") or {}).get("rss") or {}
    num = (int, float)
    return {
        "fps": r["fps"],
        "e2e_fps": r["e2e_fps"],
        "latency_mean_ms": r["latency_ms"]["mean"],
        "p99_ms": r["latency_ms"]["p99"],
        "peak_rss_mb": rss.get("peak_rss_mb"),
        "power_w": r["power_w"] if isinstance(r["power_w"], num) else None,
        "energy_mj_per_frame": (r["energy_mj_per_frame"]
                                if isinstance(r["energy_mj_per_frame"], num) else None),
        "power_note": None if isinstance(r["power_w"], num) else str(r["power_w"]),
        "bench_fps_ceiling": r["roofline"]["fps_ceiling"],
        "efficiency": r["efficiency"],
        "iters": r["latency_ms"]["n"],
        "threads": r["threads"],
    }
