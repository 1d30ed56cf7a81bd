"""`edgeseg bench`: report keys and sanity, cost-only roofline, compare, plots, one-line errors.

Small sizes (64x128) and a few timed calls keep this file well under a minute on a 2-core CPU;
the speed targets are measured by benchmarks/bench_targets.py, not here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

H, W = 64, 128
FAST = ["--height", str(H), "--width", str(W), "--iters", "4", "--warmup-s", "0",
        "--warmup-iters", "1", "--rounds", "2"]
TOP_KEYS = (
    "backend", "precision", "input_hw", "latency_ms", "fps", "e2e_fps", "stages_ms", "memory",
    "power_w", "energy_mj_per_frame", "params", "gflops", "cio_elements", "dram_mb", "roofline",
    "efficiency", "versions", "threads", "overhead_pct",
)
LATENCY_KEYS = ("min", "mean", "p50", "p90", "p95", "p99", "ci95")
STAGES = ("preprocess", "inference", "postprocess", "end_to_end")


def _cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from edgeseg.cli import app

    return CliRunner().invoke(app, ["bench", *args])


def _json(r: Any) -> dict[str, Any]:
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def rn_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained DESANet-RN (the faster of the two to export) as ONNX at 64x128."""
    from edgeseg.artifacts.checkpoint import default_meta
    from edgeseg.deploy.onnx import export_onnx
    from edgeseg.models.desanet import build_model

    out = tmp_path_factory.mktemp("bench") / "desanet-rn.onnx"
    model = build_model("desanet-rn", aux=False).eval()
    export_onnx(model, default_meta("desanet-rn", (H, W)), out, height=H, width=W, parity=False)
    return out


def _check_timed(r: dict[str, Any], backend: str) -> None:
    for k in TOP_KEYS:
        assert k in r, k
    assert r["backend"] == backend and r["precision"] == "fp32" and r["input_hw"] == [H, W]
    lat = r["latency_ms"]
    for k in LATENCY_KEYS:
        assert k in lat, k
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert lat["ci95"][0] <= lat["mean"] <= lat["ci95"][1]
    assert lat["n"] == 4
    assert r["fps"] == pytest.approx(1000.0 / lat["mean"], rel=1e-9)
    stages = r["stages_ms"]
    assert set(STAGES) <= set(stages)
    # the end-to-end frame contains its stages (same loop, same frames): deterministic
    assert stages["end_to_end"]["mean"] >= stages["inference"]["mean"]
    parts = sum(stages[s]["mean"] for s in ("preprocess", "inference", "postprocess"))
    assert stages["end_to_end"]["mean"] >= 0.999 * parts
    assert r["e2e_fps"] == pytest.approx(1000.0 / stages["end_to_end"]["mean"], rel=1e-9)
    assert r["e2e_fps"] <= 1000.0 / stages["inference"]["mean"]
    assert r["e2e_fps"] <= 3 * r["fps"]  # roughly <= fps; the two loops differ only by noise
    # no power sensor on a CI machine / this container: an explained n/a, never a number
    if not r["power"]["available"]:
        assert isinstance(r["power_w"], str) and r["power_w"].startswith("n/a (")
        assert r["energy_mj_per_frame"].startswith("n/a (")
    assert r["memory"]["rss"]["peak_rss_mb"] > 0
    assert r["params"] > 1_000_000 and r["gflops"] > 0 and r["cio_elements"] > 0
    assert r["dram_mb"] > r["cio_elements"] * 4 / 1e6  # activations + weights
    # efficiency: per round, against the matmul measured right before it (same threads)
    ref = r["efficiency_reference"]
    rounds = r["timing"]["round_mean_ms"]
    assert len(ref["matmul_gflops_per_round"]) == len(rounds) == len(ref["load_avg_1m_per_round"])
    assert r["efficiency"] == pytest.approx(float(np.median(
        [r["gflops"] / (ms / 1000) / g for ms, g in zip(rounds, ref["matmul_gflops_per_round"])])),
        rel=1e-9)
    assert ref["reliable"] == (max(ref["load_avg_1m_per_round"]) <= ref["cores"])
    _check_ceiling(r)
    assert 0 <= r["overhead_pct"] < 1.0
    assert r["versions"]["torch"] and r["versions"]["onnxruntime"]
    assert r["threads"]["torch_intra_op"] >= 1


def _check_ceiling(r: dict[str, Any]) -> None:
    """A reported ceiling bounds the measurement; one the measurement beat is dropped, named."""
    roof = r["roofline"]
    if roof["fps_ceiling"] is not None:
        assert roof["latency_floor_ms"] > 0 and r["fps"] <= roof["fps_ceiling"]
        assert roof["fraction_of_ceiling"] == pytest.approx(r["fps"] / roof["fps_ceiling"])
    else:
        assert roof["rejected_fps_ceiling"] < r["fps"] and "too low" in roof["note"]
        assert roof["latency_floor_ms"] is None and roof["fraction_of_ceiling"] is None


def test_torch_random_init_report() -> None:
    from edgeseg.bench.report import run_bench

    r = run_bench(random_init=True, model="desanet-rn", height=H, width=W, iters=4,
                  warmup_s=0.0, min_warmup=1, rounds=2, threads=1,
                  reference_s=0.1)
    _check_timed(r, "torch")
    assert r["backend_info"]["backend"] == "torch"
    assert r["efficiency_reference"]["threads"] == 1  # the reference ran with the model's threads
    assert r["model"]["variant"] == "desanet-rn"


def test_onnxruntime_cli_json_out_and_plots(rn_onnx: Path, tmp_path: Path) -> None:
    out, plots = tmp_path / "bench.json", tmp_path / "plots"
    r = _json(_cli("--model", str(rn_onnx), *FAST, "--threads", "1", "--json",
                   "--out", str(out), "--plot", str(plots)))
    _check_timed(r, "onnxruntime")
    assert r["threads"]["onnxruntime_intra_op"] == 1 and r["threads"]["requested"] == 1
    # the fp32 roof is the faster of torch's mm and onnxruntime's MatMul (MLAS sgemm ran 2x
    # torch's on one AVX-512 thread, and an onnxruntime model then beat a torch-only roof)
    cand = r["matmul"]["candidates"]
    assert "torch" in cand and any(k.startswith("onnxruntime") for k in cand)
    assert r["matmul"]["gflops"] == max(cand.values())
    assert r["roofline"]["peak_tflops"] * 1e3 == pytest.approx(max(r["matmul"]["runs_gflops"]))
    assert r["backend_info"]["onnxruntime"] == r["versions"]["onnxruntime"]
    # cost rebuilt from the ONNX metadata's variant
    assert r["model"]["variant"] == "desanet-rn" and r["params"] > 10_000_000
    saved = json.loads(out.read_text())
    assert saved["latency_ms"] == r["latency_ms"] and "samples_ms" not in saved
    names = sorted(p.name for p in plots.iterdir())
    assert names == ["cio.png", "compare.png", "latency.png"]
    for p in plots.iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    assert sorted(Path(p).name for p in r["plots"]) == names


def test_cost_only_profile_roofline_matches_profile_numbers() -> None:
    from edgeseg.profiles import load_profile

    r = _json(_cli("--random-init", "--model", "desanet-hn", "--profile", "jetson-agx-orin",
                   "--cost-only", "--json"))
    prof = load_profile("jetson-agx-orin")
    # size and precision of the profile's deployment: predicting that device from here
    assert r["input_hw"] == [prof.deploy.height, prof.deploy.width]
    assert r["precision"] == prof.deploy.precision == "fp16"
    assert r["latency_ms"] is None and r["fps"] is None and r["efficiency"] is None
    roof = r["roofline"]
    peak = prof.device.peak_tflops["fp16"]
    assert peak is not None and prof.device.dram_gbs is not None
    compute_ms = r["gflops"] * 1e9 / (peak * 1e12) * 1e3
    memory_ms = r["dram_mb"] * 1e6 / (prof.device.dram_gbs * 1e9) * 1e3
    assert roof["latency_floor_ms"] == pytest.approx(max(compute_ms, memory_ms), rel=1e-9)
    assert roof["fps_ceiling"] == pytest.approx(1000 / max(compute_ms, memory_ms), rel=1e-9)
    assert roof["peak_tflops"] == peak and roof["dram_gbs"] == prof.device.dram_gbs
    assert "jetson-agx-orin" in roof["peak_source"]
    # DRAM = CIO x 2 bytes (fp16) + conv weights x 2 bytes
    assert r["dram_mb"] == pytest.approx(r["dram_mb_by_precision"]["fp32"] / 2, rel=1e-9)
    assert r["dram_mb"] > r["cio_elements"] * 2 / 1e6
    comps = r["cio_by_component"]
    assert sum(c["cio"] for c in comps.values()) == r["cio_elements"]
    assert {"spatial_path", "context_backbone", "fasppm", "decoder"} <= set(comps)
    assert "classifier" not in comps  # mapped to the decoder like its parameters


def test_cost_only_cpu_profile_uses_measured_peaks() -> None:
    from edgeseg.bench.report import run_bench

    r = run_bench(random_init=True, model="desanet-rn", profile="x86-cpu", cost_only=True,
                  height=H, width=W, reference_s=0.1)
    roof = r["roofline"]
    assert roof["peak_source"].startswith("measured float32 matmul")
    assert roof["bw_source"].startswith("measured")
    assert roof["latency_floor_ms"] == pytest.approx(
        max(r["gflops"] / roof["peak_tflops"], r["dram_mb"] / roof["dram_gbs"]), rel=1e-9)


def test_compare_torch_onnxruntime_and_int8(rn_onnx: Path) -> None:
    pytest.importorskip("edgeseg.deploy.quantize")
    r = _json(_cli("--model", str(rn_onnx), *FAST, "--json",
                   "--compare", "torch:fp32,onnxruntime:fp32,onnxruntime:int8"))
    configs = r["configs"]
    assert [c["config"] for c in configs] == [
        f"torch:fp32@{H}x{W}", f"onnxruntime:fp32@{H}x{W}", f"onnxruntime:int8@{H}x{W}"]
    assert [(c["backend"], c["precision"]) for c in configs] == [
        ("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")]
    for c in configs:
        for k in TOP_KEYS:
            assert k in c, k
        assert c["latency_ms"]["p50"] <= c["latency_ms"]["p99"]
        assert c["timing"]["rounds"] == 2
    assert r["speedup"][configs[0]["config"]] == 1.0
    assert all(v > 0 for v in r["speedup"].values())
    # the int8 graph really is the quantized one; cost counts int8 bytes
    assert configs[2]["backend_info"]["precision"] == "int8"
    assert configs[2]["dram_mb"] < configs[1]["dram_mb"]
    assert any("rebuilt untrained" in w for w in r["warnings"])  # torch from ONNX metadata
    # issue 18: no measured configuration exceeds its ceiling; int8 has its own peak
    for c in configs:
        roof = c["roofline"]
        assert roof["fps_ceiling"] is None or c["fps"] <= roof["fps_ceiling"], (c["config"], roof)
    assert "MatMulInteger" in configs[2]["roofline"]["peak_source"]


def test_compare_table_is_one_table() -> None:
    from edgeseg.bench.report import run_bench
    from edgeseg.cli._util import console
    from edgeseg.cli.bench import print_report

    report = run_bench(
        random_init=True, model="desanet-rn", cost_only=True, profile="jetson-agx-orin",
        compare=f"torch:fp32@{H}x{W},tensorrt:fp16@{H}x{W},tensorrt:int8@{H}x{W}",
    )
    assert [c["precision"] for c in report["configs"]] == ["fp32", "fp16", "int8"]
    with console.capture() as cap:
        print_report(report)
    text = cap.get()
    assert text.count("edgeseg bench") == 1
    for label in ("torch:fp32", "tensorrt:fp16", "tensorrt:int8", "ceiling FPS"):
        assert label in text


def test_parse_compare() -> None:
    from edgeseg.bench.report import BenchConfig, parse_compare
    from edgeseg.errors import EdgesegError

    assert parse_compare("torch,onnxruntime:int8@256x512") == [
        BenchConfig("torch", "fp32"), BenchConfig("onnxruntime", "int8", 256, 512)]
    for bad, msg in [("tflite:fp32", "unknown backend"), ("torch:fp64", "unknown precision"),
                     ("torch@12x", "expected HxW"), ("torch,torch", "listed twice"),
                     ("torch,,onnxruntime", "empty configuration")]:
        with pytest.raises(EdgesegError, match=msg):
            parse_compare(bad)


def test_overhead_machinery_is_cheap() -> None:
    from edgeseg.bench.report import measure_overhead

    o = measure_overhead(n=500)
    # clock reads + a call: microseconds, against latencies of milliseconds
    assert 0 < o["timer_ms"] < 0.05 and 0 < o["stage_frame_ms"] < 0.2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no model: give --model"),
        (["--model", "{tmp}/missing.pt"], "checkpoint not found"),
        (["--model", "{tmp}/missing.onnx"], "ONNX file not found"),
        (["--random-init", "--model", "desanet-rn", "--backend", "tflite"], "--backend: expected"),
        (["--random-init", "--model", "desanet-rn", "--precision", "fp64"], "--precision"),
        (["--random-init"], "--random-init needs --model"),
        (["--model", "desanet-rn"], "is a variant, not a trained model"),
        (["--weights", "{tmp}/a.pt", "--model", "desanet-rn", "--random-init"], "give one model"),
        (["--random-init", "--model", "nope"], "--model nope: not a model file or a variant"),
        (["--random-init", "--model", "desanet-rn", "--iters", "3", "--duration-s", "1"],
         "not both"),
        (["--random-init", "--model", "desanet-rn", "--compare", "torch,tflite"],
         "unknown backend 'tflite'"),
        (["--random-init", "--model", "desanet-rn", "--profile", "no-such-board"],
         "unknown profile"),
        (["--random-init", "--model", "desanet-rn", "--precision", "int8", "--iters", "1"],
         "torch runs fp32"),
        (["--model", "{tmp}/model.engine"], "TensorRT is not available"),
        (["--random-init", "--model", "desanet-rn", "--backend", "tensorrt"],
         "TensorRT is not available"),
    ],
)
def test_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    from edgeseg.deploy.tensorrt import tensorrt_available

    if "TensorRT" in message and tensorrt_available():
        pytest.skip("TensorRT is installed here")
    (tmp_path / "model.engine").write_bytes(b"not an engine")
    r = _cli(*[a.format(tmp=tmp_path) for a in args], "--height", "64", "--width", "64")
    assert r.exit_code == 2, r.output
    # an old flag's one deprecation line may come first; then exactly one error line
    lines = [ln for ln in r.stderr.strip().splitlines() if "is deprecated: use" not in ln]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], r.stderr
    assert r.stdout == ""
