"""Q/DQ placement (issue 29): the DCN offset branch in float on every target, TensorRT's rules
(Q/DQ only on weighted-op and residual-Add inputs, no quantized BN, no unequal Concat scales),
the BN after DeformConv folded, and the static checker behind `calibrate --check`.

Random-init DESANets at 64x128 are exported once per module; calibration is minmax over two
random frames (placement does not depend on the ranges).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeseg.deploy.quantize import QuantSettings, compute_ranges, excluded_nodes, quantize_qdq
from edgeseg.deploy.quantize.check import check_qdq
from edgeseg.deploy.quantize.placement import dcn_branch_nodes, fold_deformconv_bn
from edgeseg.deploy.quantize.qdq import ensure_node_names

HW = (64, 128)


class _Frames:
    """A CalibrationReader stand-in: ``chunks(n)`` of onnxruntime data readers."""

    def __init__(self, n: int, shape: tuple[int, ...] = (1, 3, *HW)) -> None:
        rng = np.random.default_rng(1)
        self.data = [{"input": rng.standard_normal(shape).astype(np.float32)} for _ in range(n)]

    def chunks(self, size: int) -> Any:
        from onnxruntime.quantization import CalibrationDataReader

        for i in range(0, len(self.data), size):
            items = iter(self.data[i:i + size])

            class Reader(CalibrationDataReader):
                def get_next(self) -> Any:
                    return next(items, None)

            yield Reader()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    import torch

    from edgeseg.deploy.onnx import export_onnx
    from edgeseg.models.desanet import build_model
    from edgeseg.train.checkpoint import default_meta

    root = tmp_path_factory.mktemp("export")
    out: dict[tuple[str, str], Path] = {}
    for variant in ("desanet-hn", "desanet-rn"):
        torch.manual_seed(0)
        model = build_model(variant, aux=False).eval()
        with torch.no_grad():  # near-zero offsets, as a freshly fine-tuned model has
            model.spatial_path.deform.offset.weight.normal_(0.0, 1e-4)
            model.spatial_path.deform.offset.bias.uniform_(-0.05, 0.05)
        for dcn in ("native", "portable"):
            path = root / f"{variant}-{dcn}.onnx"
            export_onnx(model, default_meta(variant, HW), path, height=HW[0], width=HW[1],
                        dcn=dcn, parity=False, threads=1)
            out[variant, dcn] = path
    return out


def _quantize(src: Path, target: str, work: Path) -> tuple[Any, Any]:
    """(float model as calibrated, its Q/DQ model) the way `calibrate` makes them."""
    model = onnx.load(str(src))
    ensure_node_names(model)
    fold_deformconv_bn(model)
    work.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(work / "m.onnx"))
    s = QuantSettings.for_target(target, "minmax", machine="x86_64", cpu_flags=set())
    ranges = compute_ranges(work / "m.onnx", _Frames(2), s, work)
    quantize_qdq(work / "m.onnx", work / "q.onnx", ranges, s, excluded_nodes(model, s.exclude),
                 work)
    return model, onnx.load(str(work / "q.onnx"))


@pytest.fixture(scope="module")
def quantized(exported, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple, tuple]:
    root = tmp_path_factory.mktemp("q")
    return {(v, d, t): _quantize(p, t, root / f"{v}-{d}-{t}")
            for (v, d), p in exported.items() for t in ("tensorrt", "onnxruntime")}


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["desanet-hn", "desanet-rn"])
@pytest.mark.parametrize("dcn", ["native", "portable"])
def test_tensorrt_target_follows_tensorrts_rules(quantized, variant: str, dcn: str) -> None:
    float_model, q = quantized[variant, dcn, "tensorrt"]
    r = check_qdq(q, "tensorrt")
    assert r["ok"], r["counts"]
    assert set(r["qdq_by_consumer"]) <= {"Conv", "Add"} and r["qdq_by_consumer"]["Conv"] > 50
    assert not any(n.op_type == "BatchNormalization" for n in q.graph.node)
    # every conv but the float ones (offset conv, classifier) has INT8 weights
    n_conv = sum(n.op_type == "Conv" for n in float_model.graph.node)
    assert r["weights_by_consumer"]["Conv"] == n_conv - 2


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["desanet-hn", "desanet-rn"])
@pytest.mark.parametrize("dcn", ["native", "portable"])
def test_no_target_quantizes_the_dcn_offsets(quantized, variant: str, dcn: str) -> None:
    for target in ("tensorrt", "onnxruntime"):
        r = check_qdq(quantized[variant, dcn, target][1], target)
        assert r["counts"]["dcn_quantized"] == 0 and r["ok"], (target, r["counts"])


def _with_outputs(model: Any, names: list[str]) -> bytes:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    m.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                          for n in names if n not in have)
    return m.SerializeToString()


@pytest.mark.slow
@pytest.mark.parametrize("target", ["tensorrt", "onnxruntime"])
def test_near_zero_offsets_stay_exact_in_int8(quantized, target: str) -> None:
    """Offsets of ~0.05 px: the INT8 model's offsets, and the native DeformConv's output, equal
    a float reference (torchvision's deform_conv2d) on the INT8 model's own DCN input."""
    import onnxruntime as ort
    import torch
    from torchvision.ops import deform_conv2d

    for dcn in ("native", "portable"):
        _, q = quantized["desanet-hn", dcn, target]
        inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
        by_name = {n.name: n for n in q.graph.node}
        offset_conv = next(by_name[n] for n in dcn_branch_nodes(q) if by_name[n].op_type == "Conv")
        x_name = offset_conv.input[0]
        watch = [x_name, offset_conv.output[0]]
        dcn_node = next((n for n in q.graph.node if n.op_type == "DeformConv"), None)
        if dcn_node is not None:
            watch.append(dcn_node.output[0])
        sess = ort.InferenceSession(_with_outputs(q, watch), providers=["CPUExecutionProvider"])
        frame = np.random.default_rng(5).standard_normal((1, 3, *HW)).astype(np.float32)
        got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": frame})))
        x = torch.from_numpy(got[x_name])
        w_off = torch.from_numpy(inits[offset_conv.input[1]].astype(np.float32))
        b_off = torch.from_numpy(inits[offset_conv.input[2]].astype(np.float32))
        offsets = torch.nn.functional.conv2d(x, w_off, b_off, padding=1)
        assert float(offsets.abs().max()) < 0.1  # near zero: INT8 would round them away
        np.testing.assert_allclose(got[offset_conv.output[0]], offsets.numpy(), atol=1e-6)
        if dcn_node is not None:
            w = torch.from_numpy(inits[dcn_node.input[1]].copy())
            b = torch.from_numpy(inits[dcn_node.input[3]].copy())
            ref = deform_conv2d(x, offsets, w, b, padding=(1, 1))
            np.testing.assert_allclose(got[dcn_node.output[0]], ref.numpy(), atol=1e-4,
                                       rtol=1e-4)


def test_bn_fold_into_deformconv_is_exact(tmp_path: Path) -> None:
    """DeformConv -> BN folds to one DeformConv with the same outputs (onnxruntime runs both)."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    c = 4

    def t(name: str, a: np.ndarray) -> Any:
        return numpy_helper.from_array(a.astype(np.float32), name)

    inits = [t("w", rng.standard_normal((c, c, 3, 3))), t("b", rng.standard_normal(c)),
             t("gamma", rng.uniform(0.5, 2, c)), t("beta", rng.standard_normal(c)),
             t("mean", rng.standard_normal(c)), t("var", rng.uniform(0.5, 2, c)),
             t("wo", rng.standard_normal((18, c, 3, 3)) * 0.3)]
    nodes = [helper.make_node("Conv", ["x", "wo"], ["off"], pads=[1, 1, 1, 1], name="oc"),
             helper.make_node("DeformConv", ["x", "w", "off", "b"], ["d"], pads=[1, 1, 1, 1],
                              name="dc"),
             helper.make_node("BatchNormalization", ["d", "gamma", "beta", "mean", "var"],
                              ["y"], epsilon=1e-3, name="bn")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, [1, c, 6, 7])],
                          [helper.make_tensor_value_info("y", 1, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
    x = rng.standard_normal((1, c, 6, 7)).astype(np.float32)

    def run(m: Any) -> np.ndarray:
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return s.run(None, {"x": x})[0]

    before = run(model)
    assert fold_deformconv_bn(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Conv", "DeformConv"]
    np.testing.assert_allclose(run(model), before, rtol=1e-5, atol=1e-5)
    assert fold_deformconv_bn(model) == 0  # nothing left to fold


def _qdq_graph(concat_scales: tuple[float, float], relu_qdq: bool) -> Any:
    """x -> Q/DQ -> Conv -> Relu; two DQ'd branches -> Concat; optional Q/DQ into the Relu."""
    def s(name: str, v: float) -> Any:
        return helper.make_tensor(name, TensorProto.FLOAT, [], [v])

    z = helper.make_tensor("z", TensorProto.INT8, [], [0])
    wq = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.int8), "wq")
    inits = [s("s1", 0.1), s("sa", concat_scales[0]), s("sb", concat_scales[1]), z, wq,
             s("sw", 0.01)]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s1", "z"], ["xq"], name="q0"),
             helper.make_node("DequantizeLinear", ["xq", "s1", "z"], ["xd"], name="dq0"),
             helper.make_node("DequantizeLinear", ["wq", "sw", "z"], ["w"], name="dqw"),
             helper.make_node("Conv", ["xd", "w"], ["c"], name="conv")]
    relu_in = "c"
    if relu_qdq:
        nodes += [helper.make_node("QuantizeLinear", ["c", "s1", "z"], ["cq"], name="q1"),
                  helper.make_node("DequantizeLinear", ["cq", "s1", "z"], ["cd"], name="dq1")]
        relu_in = "cd"
    nodes += [helper.make_node("Relu", [relu_in], ["r"], name="relu"),
              helper.make_node("QuantizeLinear", ["r", "sa", "z"], ["aq"], name="qa"),
              helper.make_node("DequantizeLinear", ["aq", "sa", "z"], ["ad"], name="dqa"),
              helper.make_node("QuantizeLinear", ["c", "sb", "z"], ["bq"], name="qb"),
              helper.make_node("DequantizeLinear", ["bq", "sb", "z"], ["bd"], name="dqb"),
              helper.make_node("Concat", ["ad", "bd"], ["y"], axis=1, name="cat")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, [1, 2, 4, 4])],
                          [helper.make_tensor_value_info("y", 1, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])


def test_checker_counts_each_kind() -> None:
    bad = check_qdq(_qdq_graph((0.1, 0.2), relu_qdq=True), "tensorrt")
    assert bad["qdq_by_consumer"] == {"Concat": 2, "Conv": 1, "Relu": 1}
    assert bad["weights_by_consumer"] == {"Conv": 1}
    assert bad["counts"]["concat_unequal_scales"] == 1 and bad["nodes"]["concat_unequal_scales"] \
        == ["cat"]
    assert bad["non_weighted_by_op"] == {"Concat": 2, "Relu": 1} and not bad["ok"]
    # the CPU target tolerates onnxruntime's own placement
    assert check_qdq(_qdq_graph((0.1, 0.2), relu_qdq=True), "onnxruntime")["ok"]
    same = check_qdq(_qdq_graph((0.1, 0.1), relu_qdq=False), "tensorrt")
    assert same["counts"]["concat_unequal_scales"] == 0
    assert same["non_weighted_by_op"] == {"Concat": 2}


def test_checker_flags_int32_bias_and_quantized_offsets() -> None:
    """An INT32 bias DQ and a Q/DQ between the offset conv and DeformConv are both found."""
    def s(name: str, v: float) -> Any:
        return helper.make_tensor(name, TensorProto.FLOAT, [], [v])

    inits = [s("sc", 0.1), helper.make_tensor("z", TensorProto.INT8, [], [0]),
             numpy_helper.from_array(np.zeros(18, np.int32), "bq"),
             numpy_helper.from_array(np.zeros((18, 2, 3, 3), np.float32), "wo"),
             numpy_helper.from_array(np.zeros((2, 2, 3, 3), np.float32), "w")]
    nodes = [helper.make_node("DequantizeLinear", ["bq", "sc"], ["b"], name="dqb"),
             helper.make_node("Conv", ["x", "wo", "b"], ["off"], name="oc"),
             helper.make_node("QuantizeLinear", ["off", "sc", "z"], ["oq"], name="qo"),
             helper.make_node("DequantizeLinear", ["oq", "sc", "z"], ["od"], name="dqo"),
             helper.make_node("DeformConv", ["x", "w", "od"], ["y"], name="dc")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, [1, 2, 4, 4])],
                          [helper.make_tensor_value_info("y", 1, None)], inits)
    r = check_qdq(helper.make_model(g), "onnxruntime")
    assert r["counts"]["int32_dq"] == 1 and r["counts"]["dcn_quantized"] == 1 and not r["ok"]


def test_calibrate_check_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgeseg.cli import app

    path = tmp_path / "m.int8.onnx"
    onnx.save(_qdq_graph((0.1, 0.2), relu_qdq=True), str(path))
    r = CliRunner().invoke(app, ["calibrate", "--check", str(path), "--json"])
    assert r.exit_code == 1, r.output  # forbidden findings for the default tensorrt target
    report = json.loads(r.stdout)
    assert report["counts"]["concat_unequal_scales"] == 1 and report["ok"] is False
    r = CliRunner().invoke(app, ["calibrate", "--check", str(path), "--target", "onnxruntime"])
    assert r.exit_code == 0, r.output
    # hostile input: a file that is not ONNX, one with no Q/DQ: one line, exit 2
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage")
    for bad in (tmp_path / "junk.onnx", tmp_path / "missing.onnx"):
        r = CliRunner().invoke(app, ["calibrate", "--check", str(bad)])
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output


# --- the CPU target's integer kernels (non-VNNI AVX2 saturates u8s8 with full-range weights) --


@pytest.mark.parametrize(("flags", "reduce"), [
    ({"avx2", "fma"}, True), ({"avx2", "avx512_vnni"}, False), ({"avx2", "avx_vnni"}, False),
    (set(), True),
])
def test_reduce_range_only_without_vnni(flags: set[str], reduce: bool) -> None:
    s = QuantSettings.for_target("onnxruntime", machine="x86_64", cpu_flags=flags)
    assert s.reduce_range is reduce and s.activation_type == "uint8"
    assert not QuantSettings.for_target("onnxruntime", machine="aarch64").reduce_range
    assert not QuantSettings.for_target("tensorrt", cpu_flags=flags).reduce_range


def _matmul_integer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    g = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "g",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, list(a.shape))],
        [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
        [numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"a": a})[0]


def test_chosen_weight_range_does_not_saturate_here() -> None:
    """The weights this machine's settings give (7-bit with reduce_range) against a numpy int64
    reference, on the worst case for int16 pair sums: activations 255, weights at the extremes."""
    s = QuantSettings.for_target("onnxruntime", machine="x86_64")
    wmax = 63 if s.reduce_range else 127
    rng = np.random.default_rng(0)
    a = np.full((8, 512), 255, np.uint8)
    a[::2] = rng.integers(0, 256, (4, 512), dtype=np.uint8)
    b = rng.choice(np.array([-wmax - 1, wmax], np.int8), (512, 16))
    ref = a.astype(np.int64) @ b.astype(np.int64)
    np.testing.assert_array_equal(_matmul_integer(a, b), ref)
    full = rng.choice(np.array([-128, 127], np.int8), (512, 16))
    exact = np.array_equal(_matmul_integer(a, full), a.astype(np.int64) @ full.astype(np.int64))
    print(f"reduce_range={s.reduce_range}; full-range u8s8 exact on this CPU: {exact}")
