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
