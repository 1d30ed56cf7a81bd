"""Self-describing, atomically written training checkpoints.

A checkpoint holds the model, optimizer, scheduler, RNG states, iteration and run config, and
the model metadata every later command needs (variant, classes, palette, mean/std, input size),
so `edgeseg export/eval/run --model CKPT` ask for nothing else. Everything in it loads with
``torch.load(weights_only=True)``: tensors, numbers, strings, lists and dicts only.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeseg import __version__
from edgeseg.artifacts.checkpoint import (
    FORMAT,
    check_variant,
    checkpoint_variant,
    default_meta,
    file_sha256,
    load_checkpoint,
    load_model,
    load_state,
)
from edgeseg.artifacts.meta import ModelMeta

__all__ = [
    "FORMAT",
    "check_variant",
    "checkpoint_variant",
    "default_meta",
    "file_sha256",
    "load_checkpoint",
    "load_model",
    "load_state",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]



def rng_state() -> dict[str, Any]:
    kind, key, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(np.asarray(key, dtype=np.int64)), pos, has_gauss, cached],
        "python": _py_state_to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _py_state_to_lists(s: tuple) -> list:
    version, internal, gauss = s
    return [version, list(internal), gauss]


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus format/version stamps) to ``path`` via temp file + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "edgeseg_version": __version__, **payload}
    from edgeseg.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    return path


def save_model_only(path: str | Path, model: torch.nn.Module, meta: ModelMeta, **extra: Any) -> Path:
    """A weights-only checkpoint (e.g. `--random-init` cost studies, tests)."""
    return save_checkpoint(path, {"model": model.state_dict(), "meta": meta.to_dict(), **extra})
