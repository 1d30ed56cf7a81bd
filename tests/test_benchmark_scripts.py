"""benchmarks/*.py run as scripts, so their folder is first on sys.path: a script named like an
installed module shadows it for every import in that process (benchmarks/triton.py did: torch's
optimizers import ``triton`` through torch._dynamo and got the benchmark)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py"))


def test_benchmarks_found() -> None:
    assert "train_recipe" in SCRIPTS and "demo_time" in SCRIPTS


@pytest.mark.parametrize("name", SCRIPTS)
def test_no_benchmark_shadows_an_installed_module(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != BENCHMARKS])
    spec = importlib.util.find_spec(name)
    assert spec is None, (
        f"benchmarks/{name}.py shadows the installed module '{name}' ({spec.origin})")
