"""mypy over the TensorRT-facing modules, against the vendored TensorRT 10.13 stubs (typings/),
and proof that those stubs bite: a wrong attribute or argument count fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mypy(*targets: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("mypy")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", *targets],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )


def test_mypy_clean_on_deploy_and_runtime() -> None:
    # Errors in modules they import (data/, models/) are `make lint`'s, not this test's.
    proc = _mypy("--follow-imports=silent", "edgeseg/deploy", "edgeseg/runtime", "edgeseg/artifacts")
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_wrong_tensorrt_attribute_or_arity_fails_mypy(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch_trt.py"
    scratch.write_text(
        "import tensorrt as trt\n"
        "x: int = trt.NoSuchThing\n"
        "def f(config: trt.IBuilderConfig, cache: trt.ITimingCache) -> None:\n"
        "    config.set_timing_cache(cache)\n"
        "def g(runtime: trt.Runtime) -> None:\n"
        "    runtime.DLA_cores = 1\n"
    )
    good = tmp_path / "scratch_ok.py"
    good.write_text(
        "import tensorrt as trt\n"
        "def f(config: trt.IBuilderConfig, cache: trt.ITimingCache) -> bool:\n"
        "    return config.set_timing_cache(cache, False)\n"
    )
    bad = _mypy(str(scratch))
    assert bad.returncode == 1
    out = bad.stdout
    assert 'scratch_trt.py:2: error: Module has no attribute "NoSuchThing"' in out
    assert "scratch_trt.py:4: error: Missing positional argument" in out
    assert 'scratch_trt.py:6: error: "Runtime" has no attribute "DLA_cores"' in out
    ok = _mypy(str(good))
    assert ok.returncode == 0, ok.stdout
