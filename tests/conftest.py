"""Shared fixtures: one synthetic dataset and one trained checkpoint per test session.

Training once and sharing the checkpoint keeps the suite fast; tests that need trained
weights (eval, export parity, INT8 agreement, run) take `trained_checkpoint`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("CI", "true")  # plain progress lines, no live bars, in test output

# The shared run: DESANet-HN on synthetic scenes at 128x256 on CPU, short enough for CI
# (~2 min on 2 idle cores). It proves learning, not accuracy: the mIoU >= 0.60 acceptance run
# is tests/test_train.py::test_acceptance_miou (EDGESEG_ACCEPTANCE=1).
TRAIN_HW = (128, 256)
_ACCEPTANCE = os.environ.get("EDGESEG_ACCEPTANCE") == "1"
TRAIN_SETTINGS = dict(
    iters=int(os.environ.get("EDGESEG_TEST_ITERS", 1500 if _ACCEPTANCE else 60)), batch=8, lr=0.05
)


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
        None,
        model="desanet-hn",
        data=str(synthetic_root),
        out=str(out),
        split="train",
        crop=TRAIN_HW,
        scale=(0.75, 1.5),
        gridmask=False,
        rmi=False,
        workers=1,
        seed=0,
        ckpt_every=0,
        **TRAIN_SETTINGS,
    )
    return train(cfg, log=lambda _msg: None), cfg


@pytest.fixture(scope="session")
def trained_checkpoint(trained_run, synthetic_root: Path) -> tuple[Path, Path]:
    """(checkpoint path, Cityscapes-layout data root) of the shared trained model."""
    return trained_run[0].checkpoint, synthetic_root
