"""A synthetic dataset on disk in the exact Cityscapes layout and file naming.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeseg.atomic import publish
from edgeseg.data.cityscapes import CLASSES, ID_TO_TRAIN_ID, LABEL_ID_COLORS, NUM_CLASSES
from edgeseg.data.synthetic.scene import generate_scene, scene_rng
from edgeseg.errors import EdgesegError

#: Fake city names per split; images are dealt to them in consecutive blocks.
SYNTH_CITIES: dict[str, tuple[str, ...]] = {
    "train": ("pixelburg", "rasterdorf", "voxelstadt"),
    "val": ("texelheim",),
}
#: File written at the dataset root; `--overwrite` only replaces directories that carry it.
MARKER = "edgeseg_synthetic.json"
_FRAME = 19  # Cityscapes annotates the 20th frame of each 30-frame snippet

# --------------------------------------------------------------------------------------------
# Writing a dataset
# --------------------------------------------------------------------------------------------


def write_synthetic_cityscapes(
    out: str | Path,
    train: int = 200,
    val: int = 50,
    height: int = 256,
    width: int = 512,
    seed: int = 0,
    progress_cb: Callable[[str, int, int], None] | None = None,
    *,
    overwrite: bool = False,
    color: bool = True,
) -> dict[str, Any]:
    """Write a synthetic dataset in the exact Cityscapes layout and naming under ``out``.

    For each image: ``leftImg8bit/{split}/{city}/{city}_{seq:06d}_000019_leftImg8bit.png`` and
    ``gtFine/{split}/{city}/..._gtFine_labelIds.png``, ``..._gtFine_labelTrainIds.png`` and (with
    ``color``) ``..._gtFine_color.png``. Image ``i`` of a split depends only on ``(seed, split,
    i)``. The dataset is written to a temporary sibling directory and renamed into place, so
    ``out`` is never half-written. ``out`` must not exist or be empty; with ``overwrite`` it may
    be an earlier synthetic dataset (it carries ``edgeseg_synthetic.json``), which is replaced.

    ``progress_cb(split, done, total)`` is called after each image. Returns a summary: counts,
    size, seed, seconds, ms per scene and the fraction of pixels of each train class.
    """
    out = Path(out)
    if train < 1 or val < 0:
        raise EdgesegError(f"need train >= 1 and val >= 0 images, got train={train} val={val}")
    if height < 16 or width < 16:
        raise EdgesegError(f"image size {width}x{height} is too small: at least 16x16")
    if out.exists() and not out.is_dir():
        raise EdgesegError(f"output exists and is not a directory: {out}")
    replace = out.is_dir() and any(out.iterdir())
    if replace and not overwrite:
        raise EdgesegError(f"output directory is not empty: {out} (use --overwrite to replace it)")
    if replace and not (out / MARKER).is_file():
        raise EdgesegError(
            f"refusing to replace {out}: not a synthetic dataset written by edgeseg (no {MARKER})"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()  # honours the umask, unlike mkdtemp's 0700
    t0 = time.perf_counter()
    gen_s = 0.0
    hist = np.zeros(256, np.int64)
    total = train + val
    done = 0
    try:
        for split, n in (("train", train), ("val", val)):
            cities = SYNTH_CITIES[split]
            for i in range(n):
                city = cities[min(i * len(cities) // max(n, 1), len(cities) - 1)]
                stem = f"{city}_{i:06d}_{_FRAME:06d}"
                t = time.perf_counter()
                rgb, ids = generate_scene(scene_rng(seed, split, i), height, width)
                gen_s += time.perf_counter() - t
                train_ids = ID_TO_TRAIN_ID[ids]
                hist += np.bincount(train_ids.ravel(), minlength=256)
                img_dir = tmp / "leftImg8bit" / split / city
                gt_dir = tmp / "gtFine" / split / city
                img_dir.mkdir(parents=True, exist_ok=True)
                gt_dir.mkdir(parents=True, exist_ok=True)
                _imwrite(img_dir / f"{stem}_leftImg8bit.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                _imwrite(gt_dir / f"{stem}_gtFine_labelIds.png", ids)
                _imwrite(gt_dir / f"{stem}_gtFine_labelTrainIds.png", train_ids)
                if color:
                    bgr = cv2.cvtColor(LABEL_ID_COLORS[ids], cv2.COLOR_RGB2BGR)
                    _imwrite(gt_dir / f"{stem}_gtFine_color.png", bgr)
                done += 1
                if progress_cb is not None:
                    progress_cb(split, done, total)
        seconds = time.perf_counter() - t0
        counted = hist[:NUM_CLASSES]
        summary: dict[str, Any] = {
            "out": str(out.resolve()),
            "splits": {"train": train, "val": val},
            "cities": {k: list(v) for k, v in SYNTH_CITIES.items() if (train, val)[k == "val"] > 0},
            "height": height,
            "width": width,
            "seed": seed,
            "seconds": round(seconds, 3),
            "ms_per_scene": round(1000.0 * gen_s / total, 2),
            "class_fraction": {
                name: round(float(c) / max(int(hist.sum()), 1), 5)
                for name, c in zip(CLASSES, counted)
                if c > 0
            },
            "ignored_fraction": round(float(hist[255]) / max(int(hist.sum()), 1), 5),
        }
        meta = {k: summary[k] for k in ("splits", "height", "width", "seed", "cities")}
        (tmp / MARKER).write_text(
            json.dumps({"generator": "edgeseg.data.synthetic", **meta}, indent=2)
        )
        publish(tmp, out)  # a swap when replacing an earlier dataset (or an empty folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _imwrite(path: Path, img: np.ndarray) -> None:
    if not cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise EdgesegError(f"cannot write {path}")
