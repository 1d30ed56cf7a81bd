"""Roofline ceilings never sit below a measurement (issue 18): INT8 gets its own measured peak
(onnxruntime MatMulInteger) or no ceiling, never the FP32 matmul rate; a beaten ceiling is
dropped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

COST = {"gflops": 2.0, "dram_mb": 10.0, "dram_mb_by_precision": {"fp32": 10.0, "int8": 2.5}}
FP32 = {"gflops": 40.0, "backend": "torch", "device": "cpu", "dtype": "float32", "threads": 2}
DRAM = {"gbs": 20.0, "method": "copy"}


def test_int8_without_an_int8_peak_has_no_ceiling() -> None:
    """Was: the fp32 matmul rate (40 GFLOP/s -> 20 FPS) also bounded int8 runs, which beat it."""
    from edgeseg.bench.cost import roofline_for

    r = roofline_for(COST, None, "int8", measured={"matmul": FP32, "dram": DRAM})
    assert r["fps_ceiling"] is None and r["latency_floor_ms"] is None
    assert "no int8 peak" in r["peak_source"]
    fp32 = roofline_for(COST, None, "fp32", measured={"matmul": FP32, "dram": DRAM})
    assert fp32["fps_ceiling"] == pytest.approx(1000 / max(2.0 / 0.04, 10.0 / 20.0))


def test_int8_uses_the_measured_int8_peak() -> None:
    from edgeseg.bench.cost import roofline_for

    int8 = {**FP32, "gflops": 100.0, "dtype": "int8", "backend": "onnxruntime MatMulInteger u8s8"}
    r = roofline_for(COST, None, "int8",
                     measured={"matmul": FP32, "matmul_int8": int8, "dram": DRAM})
    assert r["peak_tflops"] == pytest.approx(0.1)
    assert r["fps_ceiling"] == pytest.approx(1000 / max(2.0 / 0.1, 2.5 / 20.0))
    assert "MatMulInteger" in r["peak_source"]


def test_a_beaten_ceiling_is_dropped() -> None:
    from edgeseg.bench.cost import roofline_for, with_measurement

    r = roofline_for(COST, None, "fp32", measured={"matmul": FP32, "dram": DRAM})
    ceiling = r["fps_ceiling"]
    ok = with_measurement(dict(r), 0.5 * ceiling)
    assert ok["fps_ceiling"] == ceiling and ok["fraction_of_ceiling"] == pytest.approx(0.5)
    beaten = with_measurement(dict(r), 1.5 * ceiling)
    assert beaten["fps_ceiling"] is None and beaten["fraction_of_ceiling"] is None
    assert beaten["rejected_fps_ceiling"] == ceiling and "too low" in beaten["note"]


def test_int8_matmul_peak_measures_a_correct_matmul() -> None:
    """The timed op computes the integer matmul (checked against numpy) and reports a rate.

    7-bit weights: on AVX2 without VNNI the u8s8 kernel adds pairs of u8*s8 products in int16
    (vpmaddubsw) and saturates with full-range weights (seen here: -70828 for -73970); the
    rate does not depend on the values, the exactness check needs |w| <= 64."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.bench.peaks import int8_matmul_gops

    r = int8_matmul_gops(n=128, seconds=0.05, threads=1)
    assert r["gflops"] > 0 and r["dtype"] == "int8" and r["n"] == 128 and r["threads"] == 1
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    b = rng.integers(-64, 64, (8, 8), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "g",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [8, 8])],
        [numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(sess.run(None, {"a": a})[0], a.astype(np.int32) @ b)


def test_compare_chart_without_a_ceiling(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from edgeseg.bench.plots import compare_chart

    def result(cfg: str, fps: float, ceiling: float | None) -> dict:
        lat = 1000 / fps
        return {"config": cfg, "backend": cfg.split(":")[0], "precision": cfg.split(":")[1],
                "input_hw": [64, 128], "fps": fps, "e2e_fps": fps * 0.9,
                "latency_ms": {"ci95": [lat * 0.95, lat * 1.05]},
                "roofline": {"fps_ceiling": ceiling}}

    out = compare_chart([result("onnxruntime:fp32", 30.0, 39.6),
                         result("onnxruntime:int8", 45.0, None)], tmp_path / "c.png")
    assert out.is_file() and out.stat().st_size > 0


# The timed check on a real comparison (INT8 quantized here) is in
# tests/test_bench_cli.py::test_compare_torch_onnxruntime_and_int8, which already runs one.
