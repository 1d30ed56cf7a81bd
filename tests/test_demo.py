"""The README's main job, shortened: every stage runs and leaves its outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2

VENV_BIN = Path(sys.executable).parent


def test_quick_demo_leaves_all_outputs(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    proc = subprocess.run(
        [str(VENV_BIN / "edgeseg"), "demo", "--quick", "--out", str(out), "--json"],
        capture_output=True, text=True, env={**os.environ, "CI": "true"}, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    for name in ("model.onnx", "eval.json", "calibrate.json", "bench.json", "overlay.mp4",
                 "input.mp4", "summary.json"):
        assert (out / name).is_file(), name
    assert (out / "int8" / "model.int8.onnx").is_file()
    plots = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert plots == ["cio.png", "compare.png", "latency.png"]
    assert sorted(Path(p).name for p in summary["bench"]["plots"]) == plots
    assert "samples_ms" not in json.dumps(summary["bench"])  # raw samples stay out of the JSON
    assert "train 4/4, loss" in proc.stderr  # training progress is visible, off stdout
    assert summary["export"]["parity"]["agreement"] >= 0.999
    assert {c["precision"] for c in summary["bench"]["configs"]} >= {"fp32", "int8"}
    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert frames == summary["run"]["frames"] == 6
    assert set(summary["timings_s"]) == {"synthetic scenes", "train", "eval", "export onnx",
                                         "calibrate int8", "bench fp32 vs int8", "run on video"}


def test_demo_trains_on_a_time_budget(tmp_path: Path, monkeypatch) -> None:
    """The full demo's training stage is budgeted (its schedule fitted to this CPU, at most the
    recipe's iterations) and trains on the recipe's crop when the scenes hold it."""
    import dataclasses

    import pytest

    from edgeseg import demo
    from edgeseg.train import loop
    from edgeseg.train.config import RECIPES

    seen = []

    class Stop(Exception):
        pass

    def fake_train(cfg, **kw):  # noqa: ANN001, ANN003, ANN202
        seen.append((cfg, kw))
        raise Stop

    monkeypatch.setattr(loop, "train", fake_train)
    full = demo.DemoSettings()
    small = dataclasses.replace(full, train_images=2, val_images=1)
    with pytest.raises(Stop):
        demo.run_demo(tmp_path / "out", small, log=lambda m: None)
    cfg, kw = seen[0]
    assert full.time_budget_s and cfg.time_budget_s == full.time_budget_s
    assert cfg.warmup_iters == full.warmup_iters < RECIPES["cpu-quick"]["warmup_iters"]
    assert cfg.iters == RECIPES["cpu-quick"]["iters"]  # the cap
    assert tuple(cfg.crop) == tuple(RECIPES["cpu-quick"]["crop"])
    assert callable(kw["on_schedule"])
    # scenes smaller than the recipe's crop: train on the whole scene
    with pytest.raises(Stop):
        demo.run_demo(tmp_path / "q", demo.DemoSettings.quick(), log=lambda m: None)
    assert tuple(seen[1][0].crop) == (64, 128) and seen[1][0].time_budget_s == 0.0
