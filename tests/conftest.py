"""Shared fixtures: one synthetic dataset and one trained checkpoint per test session.

Training once and sharing the checkpoint keeps the suite fast; tests that need trained
weights (eval, export parity, INT8 agreement, run) take `trained_checkpoint`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeseg.train.config import RECIPES

os.environ.setdefault("CI", "true")  # plain progress lines, no live bars, in test output

# The shared run: DESANet-HN trained with the cpu-quick recipe (AdamW, its crop, batch 4,
# RECIPES["cpu-quick"]["iters"] iterations, a fixed count so the run is deterministic) on 160
# synthetic scenes (training time per CPU: docs/benchmarks.md, "Training recipe").
# It is issue 4's acceptance run (val mIoU >= 0.35 over the 19 classes, tests/test_train.py) and the trained model
# that eval, export parity, INT8 agreement and run tests share. EDGESEG_TEST_ITERS shortens it
# for local iterations; the accuracy bounds then skip.
TRAIN_HW = (128, 256)
FULL_ITERS = RECIPES["cpu-quick"]["iters"]
TRAIN_ITERS = int(os.environ.get("EDGESEG_TEST_ITERS", FULL_ITERS))
FULLY_TRAINED = TRAIN_ITERS >= FULL_ITERS


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures(...)``): small
    tensors gain nothing from a second thread, and on a loaded CI machine torch's OpenMP
    barriers wait for preempted threads (10x slower). Restored after the module."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeseg.data.synthetic import write_synthetic_cityscapes

    root = tmp_path_factory.mktemp("synthetic") / "cityscapes"
    write_synthetic_cityscapes(root, train=160, val=24, height=TRAIN_HW[0], width=TRAIN_HW[1], seed=0)
    return root


@pytest.fixture(scope="session")
def trained_run(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """(TrainResult, TrainConfig) of the shared CPU training run."""
    from edgeseg.train.config import load_train_config
    from edgeseg.train.loop import train

    out = tmp_path_factory.mktemp("run")
    cfg = load_train_config(
        None, recipe="cpu-quick", model="desanet-hn", data=str(synthetic_root), out=str(out),
        iters=TRAIN_ITERS, seed=0,  # the recipe's crop: random crops of the TRAIN_HW scenes
    )
    return train(cfg, log=lambda _msg: None), cfg


@pytest.fixture(scope="session")
def fully_trained() -> bool:
    """True when the shared run has the recipe's full length (accuracy bounds apply)."""
    return FULLY_TRAINED


@pytest.fixture(scope="session")
def trained_checkpoint(trained_run, synthetic_root: Path) -> tuple[Path, Path]:
    """(checkpoint path, Cityscapes-layout data root) of the shared trained model."""
    return trained_run[0].checkpoint, synthetic_root
