"""TensorRT deployment logic that needs no TensorRT: versions, build plans, plugin fields,
calibration cache, engine sidecar, parser errors, profiles. Hardware tests at the bottom skip
without TensorRT + CUDA."""

from __future__ import annotations

import hashlib
import json
import struct
import warnings

import numpy as np
import pytest
import torch

from edgeseg.artifacts import sidecar as sc
from edgeseg.deploy import tensorrt as trt_mod
from edgeseg.deploy import trt_compat as tc
from edgeseg.errors import EdgesegError, MissingDependencyError

HW_REASON = "needs TensorRT + CUDA (docker/Dockerfile.gpu or Jetson)"
needs_hw = pytest.mark.skipif(
    not (trt_mod.tensorrt_available() and torch.cuda.is_available()), reason=HW_REASON
)


# --- versions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("10.3.0.30", (10, 3, 0, 30)),
        ("8.6.2.3", (8, 6, 2, 3)),
        ("10.13", (10, 13, 0, 0)),
        ("TensorRT 11.0.0", (11, 0, 0, 0)),
        ("10.13.0.35.1", (10, 13, 0, 35)),
    ],
)
def test_parse_version(text: str, expected: tuple[int, int, int, int]) -> None:
    v = tc.parse_trt_version(text)
    assert (v.major, v.minor, v.patch, v.build) == expected
    assert tc.TrtVersion.parse(v) is v


def test_parse_version_rejects_garbage() -> None:
    with pytest.raises(EdgesegError, match="not a TensorRT version"):
        tc.parse_trt_version("ten")


def test_version_order_and_tags() -> None:
    assert tc.TrtVersion.parse("10.13") > tc.TrtVersion.parse("10.3.1")  # not string order
    assert tc.TrtVersion.parse("8.6.1").cache_tag == 8601
    assert tc.TrtVersion.parse("10.3.0.30").cache_tag == 100300
    for tag in (8601, 100300, 101300, 110000):
        assert tc.TrtVersion.from_cache_tag(tag).cache_tag == tag
    assert str(tc.TrtVersion.parse("10.3.0.30")) == "10.3.0"
    assert tc.TrtVersion.parse("10.3.0.30").same_release(tc.TrtVersion.parse("10.3.0.26"))
    assert not tc.TrtVersion.parse("10.3.0").same_release(tc.TrtVersion.parse("10.3.1"))


FEATURES = {
    # version: (portable dcn, parser DeformConv, implicit int8 deprecated, strongly typed only,
    #           plugin version, plugin versions tried, tensor-address execution, explicit batch)
    "8.6.2": (True, False, False, False, "1", ("1",), False, True),
    "10.0.1": (True, False, False, False, "1", ("1",), True, False),
    "10.1.0": (False, True, True, False, "1", ("1",), True, False),
    "10.3.0": (False, True, True, False, "1", ("1",), True, False),
    "10.11.0": (False, True, True, False, "2", ("2", "1"), True, False),
    "10.13.0": (False, True, True, False, "2", ("2", "1"), True, False),
    "11.0.0": (False, True, True, True, "2", ("2", "1"), True, False),
}


@pytest.mark.parametrize("version", list(FEATURES))
def test_feature_table(version: str) -> None:
    f = tc.TrtFeatures(version)
    got = (
        f.needs_portable_dcn,
        f.onnx_parser_imports_deformconv,
        f.implicit_int8_deprecated,
        f.strongly_typed_only,
        f.modulated_deform_plugin_version,
        f.modulated_deform_plugin_versions,
        f.tensor_address_execution,
        f.explicit_batch_flag,
    )
    assert got == FEATURES[version]


def test_too_old_tensorrt_is_refused() -> None:
    with pytest.raises(EdgesegError, match="8.6 or newer"):
        tc.TrtFeatures("8.5.2")


# --- build plans -------------------------------------------------------------------------------

# (version, precision, dla) -> builder flags, calibrator, requires fp16 ONNX, network flags
PLANS = {
    ("8.6.2", "fp32", None): ((), False, False, ("EXPLICIT_BATCH",)),
    ("8.6.2", "fp16", None): (("FP16",), False, False, ("EXPLICIT_BATCH",)),
    ("8.6.2", "int8", None): (("INT8", "FP16"), True, False, ("EXPLICIT_BATCH",)),
    ("8.6.2", "fp16", 0): (("FP16", "GPU_FALLBACK"), False, False, ("EXPLICIT_BATCH",)),
    ("8.6.2", "int8", 1): (("INT8", "FP16", "GPU_FALLBACK"), True, False, ("EXPLICIT_BATCH",)),
    ("10.3.0", "fp32", None): ((), False, False, ()),
    ("10.3.0", "fp16", None): (("FP16",), False, False, ()),
    ("10.3.0", "int8", None): (("INT8", "FP16"), True, False, ()),
    ("10.3.0", "fp16", 0): (("FP16", "GPU_FALLBACK"), False, False, ()),
    ("10.3.0", "int8", 0): (("INT8", "FP16", "GPU_FALLBACK"), True, False, ()),
    ("10.13.0", "fp32", None): ((), False, False, ()),
    ("10.13.0", "fp16", None): (("FP16",), False, False, ()),
    ("10.13.0", "int8", None): (("INT8", "FP16"), True, False, ()),
    ("10.13.0", "fp16", 0): (("FP16", "GPU_FALLBACK"), False, False, ()),
    ("11.0.0", "fp32", None): ((), False, False, ("STRONGLY_TYPED",)),
    ("11.0.0", "fp16", None): ((), False, True, ("STRONGLY_TYPED",)),
    # TensorRT 11 keeps DLA (DeviceType.DLA, IBuilderConfig.DLA_core, can_run_on_DLA)
    ("11.0.0", "fp16", 0): (("GPU_FALLBACK",), False, True, ("STRONGLY_TYPED",)),
}


@pytest.mark.parametrize("key", list(PLANS), ids=[f"{v}-{p}-dla{d}" for v, p, d in PLANS])
def test_plan_matrix(key: tuple[str, str, int | None]) -> None:
    version, precision, dla = key
    plan = tc.plan_build(version, precision, dla_core=dla, gpu_fallback=True, workspace_mib=512)
    flags, calib, fp16_onnx, net_flags = PLANS[key]
    assert plan.builder_flags == flags
    assert plan.use_calibrator is calib
    assert plan.requires_fp16_onnx is fp16_onnx
    assert plan.network_flags == net_flags
    assert plan.workspace_bytes == 512 << 20
    assert plan.dla_core == dla
    assert plan.strongly_typed is version.startswith("11")
    assert plan.needs_portable_dcn is version.startswith("8.")


@pytest.mark.parametrize("version", ["8.6.2", "10.3.0", "10.13.0", "11.0.0"])
def test_plan_qdq_onnx_builds_int8_without_calibrator(version: str) -> None:
    plan = tc.plan_build(version, "int8", has_qdq=True)
    assert not plan.use_calibrator
    assert ("INT8" in plan.builder_flags) is (not version.startswith("11"))
    assert not [w for w in plan.warnings if "deprecated" in w]


def test_plan_warns_about_deprecated_calibration_on_10_1_plus() -> None:
    assert not tc.plan_build("8.6.2", "int8").warnings
    (warning,) = tc.plan_build("10.3.0", "int8").warnings
    assert "deprecated" in warning and "edgeseg calibrate" in warning


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"trt_version": "11.0.0", "precision": "int8"}, "`edgeseg calibrate`"),
        ({"trt_version": "10.3.0", "precision": "fp32", "dla_core": 0}, "DLA runs only fp16"),
        ({"trt_version": "10.3.0", "precision": "bf16"}, "unknown precision"),
        ({"trt_version": "10.3.0", "precision": "fp16", "workspace_mib": 0}, "workspace"),
        ({"trt_version": "10.3.0", "precision": "fp16", "dla_core": -1}, "DLA core"),
        ({"trt_version": "10.3.0", "precision": "fp16", "has_qdq": True}, "Q/DQ"),
        ({"trt_version": "8.4.1", "precision": "fp16"}, "too old"),
    ],
)
def test_plan_refuses_impossible_combinations(kwargs: dict, match: str) -> None:
    with pytest.raises(EdgesegError, match=match) as info:
        tc.plan_build(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("version", ["8.6.2", "10.3.0", "10.13.0", "11.0.0"])
def test_shipped_profiles_plan_without_spurious_warnings(version: str) -> None:
    """Every shipped profile sets gpu_fallback with no DLA core: that is a preference for when a
    DLA is used, not a mistake to warn about on every export."""
    from pathlib import Path

    from edgeseg.profiles import load_profile

    names = sorted((Path(__file__).resolve().parents[1] / "profiles").glob("*.yaml"))
    assert len(names) >= 5
    for name in names:
        d = load_profile(name).deploy
        if d.backend != "tensorrt":
            continue
        plan = tc.plan_build(version, d.precision, dla_core=d.dla_core,
                             gpu_fallback=d.gpu_fallback, workspace_mib=d.workspace_mib)
        assert plan.warnings == (), (name, plan.warnings)
        assert not plan.gpu_fallback and "GPU_FALLBACK" not in plan.builder_flags


def test_plan_dla_without_fallback_warns() -> None:
    plan = tc.plan_build("10.3.0", "fp16", dla_core=0, gpu_fallback=False)
    assert "GPU_FALLBACK" not in plan.builder_flags and not plan.gpu_fallback
    assert any("fallback" in w for w in plan.warnings)
    assert tc.plan_build("10.3.0", "fp16").workspace_bytes is None


# --- ModulatedDeformConv2d plugin --------------------------------------------------------------


def test_modulated_deform_fields() -> None:
    f = tc.modulated_deform_fields(1, (1, 1), [2, 2], group=1, deformable_group=1)
    assert list(f) == ["stride", "padding", "dilation", "group", "deformable_group"]
    assert all(a.dtype == np.int32 for a in f.values())
    assert f["stride"].tolist() == [1, 1] and f["padding"].tolist() == [1, 1]
    assert f["dilation"].tolist() == [2, 2]
    assert f["group"].tolist() == [1] and f["deformable_group"].tolist() == [1]


@pytest.mark.parametrize(
    "args, match",
    [
        (((1, 2), 1, 1), "differs between h and w"),
        ((1, (0, 1), 1), "differs between h and w"),
        ((0, 1, 1), "stride must be >= 1"),
        ((1, -1, 1), "padding must be >= 0"),
        ((1, 1, (1, 2, 3)), "needs 2 values"),
    ],
)
def test_modulated_deform_fields_refuses(args: tuple, match: str) -> None:
    with pytest.raises(EdgesegError, match=match):
        tc.modulated_deform_fields(*args)
    with pytest.raises(EdgesegError, match="group"):
        tc.modulated_deform_fields(1, 1, 1, group=0)


def test_dcnv1_mask_and_offset_layout() -> None:
    assert tc.dcnv1_mask_shape(2, (3, 3), (16, 32)) == (2, 9, 16, 32)
    assert tc.dcnv1_mask_shape(1, (3, 3), (8, 8), deformable_group=2) == (1, 18, 8, 8)
    assert tc.check_offset_layout((1, 18, 8, 8), (3, 3), (8, 8)) == 1
    assert tc.check_offset_layout((1, 36, 8, 8), (3, 3)) == 2
    with pytest.raises(EdgesegError, match="multiple of 18"):
        tc.check_offset_layout((1, 9, 8, 8), (3, 3))
    with pytest.raises(EdgesegError, match="output size"):
        tc.check_offset_layout((1, 18, 8, 8), (3, 3), (4, 4))


def test_torchvision_offset_layout_is_dy_then_dx() -> None:
    """What OFFSET_LAYOUT states for torchvision: channel 2t shifts rows, 2t+1 columns."""
    from torchvision.ops import deform_conv2d

    x = torch.arange(25.0).reshape(1, 1, 5, 5)
    w = torch.ones(1, 1, 1, 1)
    dy = torch.zeros(1, 2, 5, 5)
    dy[:, 0] = 1.0  # +1 row
    dx = torch.zeros(1, 2, 5, 5)
    dx[:, 1] = 1.0  # +1 column
    assert torch.equal(deform_conv2d(x, dy, w)[0, 0, :4], x[0, 0, 1:])
    assert torch.equal(deform_conv2d(x, dx, w)[0, 0, :, :4], x[0, 0, :, 1:])


def test_trt_dtype_to_numpy() -> None:
    assert tc.trt_dtype_to_numpy("DataType.HALF") == "float16"
    assert tc.trt_dtype_to_numpy("FLOAT") == "float32"
    assert tc.trt_dtype_to_numpy("DataType.INT64") == "int64"
    with pytest.raises(EdgesegError):
        tc.trt_dtype_to_numpy("DataType.FP8")


# --- calibration cache -------------------------------------------------------------------------


def test_scale_hex_known_values() -> None:
    # 1/127: the scale of a tensor with dynamic range [-1, 1]
    assert tc.scale_to_hex(1 / 127) == "3c010204"
    assert tc.scale_from_hex("3c010204") == pytest.approx(1 / 127, rel=1e-7)
    # NVIDIA forum: "relu46: 3c92aa10 -> 0.0179033577" (hex read as big-endian float32)
    assert tc.scale_from_hex("3c92aa10") == pytest.approx(0.0179033577, rel=1e-8)
    assert tc.scale_to_hex(1.0) == "3f800000"
    with pytest.raises(EdgesegError):
        tc.scale_to_hex(float("nan"))


def test_calibration_cache_exact_format(tmp_path) -> None:
    path = tc.write_calibration_cache(
        tmp_path / "calib.cache", "8.6.1.6", {"input": 1 / 127, "/sp/conv/Conv_output_0": 0.5}
    )
    assert path.read_text() == (
        "TRT-8601-EntropyCalibration2\ninput: 3c010204\n/sp/conv/Conv_output_0: 3f000000\n"
    )
    assert tc.format_calibration_cache("10.3.0.30", {}).startswith(
        b"TRT-100300-EntropyCalibration2\n"
    )


def test_calibration_cache_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(0)
    scales = {f"t{i}": float(np.float32(s)) for i, s in enumerate(rng.uniform(1e-4, 2, 50))}
    scales["(Unnamed Layer* 48) [Constant]_output"] = 0.25  # names with spaces/brackets
    path = tc.write_calibration_cache(tmp_path / "c.cache", "10.3.0", scales)
    cache = tc.read_calibration_cache(path)
    assert cache.version_tag == 100300 and cache.algorithm == "EntropyCalibration2"
    assert str(cache.trt_version) == "10.3.0"
    assert cache.scales == scales  # float32 values survive exactly


def test_calibration_cache_reads_tensorrt_written_file() -> None:
    # sampleINT8's README example of a TensorRT-written table
    text = "TRT-7000-EntropyCalibration2\ndata: 3c008912\nconv1: 3c88edfc\nprob: 3c010a14\n"
    cache = tc.parse_calibration_cache(text)
    assert cache.version_tag == 7000 and list(cache.scales) == ["data", "conv1", "prob"]
    assert cache.scales["prob"] == pytest.approx(struct.unpack(">f", bytes.fromhex("3c010a14"))[0])


@pytest.mark.parametrize(
    "text, match",
    [("garbage\n", "first line"), ("TRT-8601-EntropyCalibration2\nno-colon\n", "line 2")],
)
def test_calibration_cache_bad_input(text: str, match: str) -> None:
    with pytest.raises(EdgesegError, match=match):
        tc.parse_calibration_cache(text)


def test_read_missing_calibration_cache(tmp_path) -> None:
    with pytest.raises(EdgesegError, match="not found"):
        tc.read_calibration_cache(tmp_path / "nope.cache")


# --- sidecar -----------------------------------------------------------------------------------


def _sidecar(**kw: object) -> sc.EngineSidecar:
    base: dict = {
        "trt_version": "10.3.0.30",
        "gpu_name": "Orin",
        "compute_capability": (8, 7),
        "precision": "fp16",
        "input_shape": (1, 3, 512, 1024),
        "onnx_sha256": "ab" * 32,
        "model": {
            "variant": "desanet_hn",
            "classes": ["road"],
            "palette": [[128, 64, 128]],
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "input_hw": [512, 1024],
        },
    }
    base.update(kw)
    return sc.EngineSidecar(**base)


def test_sidecar_write_read(tmp_path) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    s = _sidecar(
        profile={"min": [1, 3, 512, 1024], "opt": [1, 3, 512, 1024], "max": [4, 3, 512, 1024]}
    )
    path = s.write(engine)
    assert path == tmp_path / "model.engine.json" == sc.sidecar_path(engine)
    data = json.loads(path.read_text())
    assert data["compute_capability"] == "8.7" and data["input_shape"] == [1, 3, 512, 1024]
    assert data["edgeseg_version"] and data["schema"] == 1
    assert sc.EngineSidecar.read(engine) == s


def test_sidecar_missing_or_broken(tmp_path) -> None:
    engine = tmp_path / "m.engine"
    with pytest.raises(EdgesegError, match="m.engine.json not found"):
        sc.EngineSidecar.read(engine)
    sc.sidecar_path(engine).write_text("{")
    with pytest.raises(EdgesegError, match="not valid JSON"):
        sc.EngineSidecar.read(engine)
    sc.sidecar_path(engine).write_text(json.dumps({"trt_version": "10.3"}))
    with pytest.raises(EdgesegError, match="lacks gpu_name"):
        sc.EngineSidecar.read(engine)


def test_check_sidecar_accepts_same_target() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sc.check_sidecar(_sidecar(), "Orin", "8.7", "10.3.0.30")
        sc.check_sidecar(_sidecar(), "Orin", (8, 7), "10.3.0.26")  # build number may differ


def test_check_sidecar_refuses_other_gpu() -> None:
    s = _sidecar(
        gpu_name="NVIDIA GeForce RTX 4090", compute_capability="8.9", trt_version="10.13.0.35"
    )
    with pytest.raises(EdgesegError) as info:
        sc.check_sidecar(s, "Orin", "8.7", "10.13.0.35")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg == (
        "engine built for NVIDIA GeForce RTX 4090 (sm_89) with TensorRT 10.13.0; this machine "
        "has Orin (sm_87) / TensorRT 10.13.0: rebuild it on the target with "
        "`edgeseg export --format engine ...`"
    )


def test_check_sidecar_refuses_other_tensorrt() -> None:
    with pytest.raises(
        EdgesegError,
        match=r"TensorRT 8\.6\.2; this machine has Orin \(sm_87\) / "
        r"TensorRT 10\.3\.0",
    ):
        sc.check_sidecar(_sidecar(trt_version="8.6.2.3"), "Orin", "8.7", "10.3.0.30")


def test_check_sidecar_refuses_dla_engine_without_that_core() -> None:
    """An AGX Orin DLA engine passes the sm_87 check on an Orin Nano (no DLA)."""
    dla = _sidecar(gpu_name="Orin", dla_core=1)
    with pytest.raises(EdgesegError, match=r"DLA core 1 .*Orin Nano has no DLA") as info:
        sc.check_sidecar(dla, "Orin Nano", "8.7", "10.3.0", dla_cores=0)
    assert "\n" not in str(info.value)
    with pytest.raises(EdgesegError, match="has 1 DLA core"):  # Orin NX 8GB: one core
        sc.check_dla(dla, 1, "Orin NX")
    sc.check_sidecar(dla, "Orin", "8.7", "10.3.0", dla_cores=2)
    sc.check_dla(_sidecar(dla_core=None), 0)  # a GPU engine needs no DLA
    assert sc.DLA_CORES["Jetson Orin Nano"] == 0 and sc.DLA_CORES["Jetson AGX Orin"] == 2


def test_check_sidecar_warns_on_same_arch_other_name() -> None:
    with pytest.warns(UserWarning, match="same sm_87"):
        sc.check_sidecar(_sidecar(gpu_name="Orin NX"), "Orin Nano", "8.7", "10.3.0")


@pytest.mark.parametrize("cc", [(8, 7), "8.7", "sm_87", "87", [8, 7]])
def test_normalise_compute_capability(cc: object) -> None:
    assert sc.normalise_compute_capability(cc) == "8.7"  # type: ignore[arg-type]


def test_normalise_compute_capability_rejects() -> None:
    with pytest.raises(EdgesegError):
        sc.normalise_compute_capability("orin")


def test_file_sha256(tmp_path) -> None:
    p = tmp_path / "f.bin"
    data = bytes(range(256)) * 5000
    p.write_bytes(data)
    assert sc.file_sha256(p, chunk_size=4096) == hashlib.sha256(data).hexdigest()


def test_meta_from_sidecar() -> None:
    from edgeseg.artifacts.sidecar import meta_from_sidecar

    meta = meta_from_sidecar(_sidecar(precision="int8"))
    assert meta.variant == "desanet_hn" and meta.precision == "int8"
    assert meta.input_hw == (512, 1024)
    with pytest.raises(EdgesegError, match="model metadata"):
        meta_from_sidecar(_sidecar(model={}))


# --- tensorrt.py pure helpers ------------------------------------------------------------------


def test_format_parser_error_is_one_line_with_hint() -> None:
    errs = [
        (
            "No importer registered for op: DeformConv.\nAttempting plugin",
            "/sp/dcn/DeformConv",
            "DeformConv",
        ),
        ("second", "n2", "Conv"),
    ]
    msg = trt_mod.format_parser_error("out/model.onnx", "8.6.2.3", errs)
    assert "\n" not in msg
    assert msg.startswith(
        "TensorRT 8.6.2 could not parse model.onnx: node /sp/dcn/DeformConv (DeformConv): "
        "No importer registered for op: DeformConv. Attempting plugin (+1 more)"
    )
    assert "portable deformable conv" in msg
    msg10 = trt_mod.format_parser_error("m.onnx", "10.3.0", errs[:1])
    assert "libnvinfer_plugin" in msg10 and "+1" not in msg10
    assert "no parser error" in trt_mod.format_parser_error("m.onnx", "10.3", [])


def test_resolve_profile() -> None:
    assert trt_mod.resolve_profile("x", [1, 3, 64, 128]) is None
    one = (1, 3, 64, 128)
    assert trt_mod.resolve_profile("x", [-1, 3, 64, 128]) == (one, one, one)
    shapes = {"x": ((1, 3, 64, 64), (1, 3, 512, 1024), (2, 3, 1024, 2048))}
    assert trt_mod.resolve_profile("x", [-1, 3, -1, -1], shapes) == shapes["x"]
    with pytest.raises(EdgesegError, match="dynamic dimensions"):
        trt_mod.resolve_profile("x", [1, 3, -1, -1])
    with pytest.raises(EdgesegError, match="fixed"):
        trt_mod.resolve_profile("x", [-1, 3, 64, 64], {"x": (one, one, one)})
    with pytest.raises(EdgesegError, match="min <= opt <= max"):
        trt_mod.resolve_profile("x", [-1, 3, 64, 128], {"x": (one, (0, 3, 64, 128), one)})


def _tiny_onnx(path, qdq: bool = False, props: dict[str, str] | None = None) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 3, 1, 1], np.ones(6, np.float32))
    nodes = [helper.make_node("Conv", ["xq" if qdq else "x", "w"], ["y"])]
    inits = [w]
    if qdq:
        inits += [
            helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]),
            helper.make_tensor("z", TensorProto.INT8, [], [0]),
        ]
        nodes = [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["xq"]),
        ] + nodes
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for k, v in (props or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))


def test_onnx_has_qdq(tmp_path) -> None:
    _tiny_onnx(tmp_path / "a.onnx")
    _tiny_onnx(tmp_path / "b.onnx", qdq=True)
    assert not trt_mod.onnx_has_qdq(tmp_path / "a.onnx")
    assert trt_mod.onnx_has_qdq(tmp_path / "b.onnx")


def test_onnx_model_meta_layouts(tmp_path) -> None:
    meta = {"variant": "desanet_rn", "classes": ["a", "b"], "input_hw": [64, 128]}
    _tiny_onnx(tmp_path / "one.onnx", props={"edgeseg": json.dumps(meta), "producer": "x"})
    assert trt_mod.onnx_model_meta(tmp_path / "one.onnx") == meta
    flat = {"variant": "desanet_rn", "classes": json.dumps(["a", "b"]), "note": "plain text"}
    _tiny_onnx(tmp_path / "flat.onnx", props=flat)
    assert trt_mod.onnx_model_meta(tmp_path / "flat.onnx") == {
        "variant": "desanet_rn",
        "classes": ["a", "b"],
        "note": "plain text",
    }


@pytest.mark.skipif(trt_mod.tensorrt_available(), reason="TensorRT is installed here")
def test_require_tensorrt_names_the_fix() -> None:
    # tensorrt-stubs leaves an importable, empty `tensorrt` namespace package: still missing.
    with pytest.raises(MissingDependencyError) as info:
        trt_mod.require_tensorrt()
    msg = str(info.value)
    assert msg.startswith("TensorRT is not available: pip install tensorrt")
    assert "JetPack" in msg and "edgeseg:jetson (docker/Dockerfile.jetson)" in msg


# --- hardware ----------------------------------------------------------------------------------


@needs_hw
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_load_and_run_engine(tmp_path, precision: str) -> None:
    from edgeseg.runtime.tensorrt_backend import TensorRTSegmenter

    meta = {
        "variant": "tiny",
        "classes": ["a", "b"],
        "palette": [[0, 0, 0], [255, 255, 255]],
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "input_hw": [8, 8],
    }
    onnx_path = tmp_path / "m.onnx"
    _tiny_onnx(onnx_path, props={"edgeseg": json.dumps(meta)})
    plan = tc.plan_build(trt_mod.tensorrt_version(), precision, workspace_mib=64)
    if plan.requires_fp16_onnx:
        pytest.skip("strongly typed TensorRT builds fp16 only from an fp16 ONNX")
    engine = tmp_path / "m.engine"
    steps: list[str] = []
    side = trt_mod.build_engine(
        onnx_path,
        engine,
        plan,
        timing_cache_path=tmp_path / "t.cache",
        progress=lambda phase, i, n: steps.append(phase),
    )
    assert engine.is_file() and (tmp_path / "t.cache").is_file()
    assert sc.EngineSidecar.read(engine) == side and side.model["variant"] == "tiny"
    seg = TensorRTSegmenter(engine)
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    out = seg.infer(x)
    np.testing.assert_allclose(out, np.repeat(x.sum(1, keepdims=True), 2, 1), atol=1e-2)


@needs_hw
def test_int8_calibrator_writes_a_cache_we_can_read(tmp_path) -> None:
    version = trt_mod.tensorrt_version()
    if tc.TrtFeatures(version).strongly_typed_only:
        pytest.skip("no implicit INT8 calibration in this TensorRT")
    onnx_path = tmp_path / "m.onnx"
    _tiny_onnx(onnx_path, props={"edgeseg": json.dumps({"variant": "tiny"})})
    rng = np.random.default_rng(0)
    cache = tmp_path / "calib.cache"
    calib = trt_mod.make_entropy_calibrator(
        (rng.standard_normal((1, 3, 8, 8)).astype(np.float32) for _ in range(4)), cache
    )
    plan = tc.plan_build(version, "int8", workspace_mib=64)
    trt_mod.build_engine(onnx_path, tmp_path / "m.engine", plan, calibrator=calib)
    parsed = tc.read_calibration_cache(cache)
    assert parsed.version_tag == version.cache_tag and "x" in parsed.scales


def test_stub_phase_start_parent_may_be_none() -> None:
    # IProgressMonitor.phase_start gets parent_phase=None for a top-level phase (TensorRT's
    # bindings docs); the vendored stub must say so, or mypy rejects a correct monitor.
    import ast
    from pathlib import Path

    stub = Path(__file__).parent.parent / "typings/tensorrt_bindings/tensorrt.pyi"
    fns = [n for n in ast.walk(ast.parse(stub.read_text())) if isinstance(n, ast.FunctionDef)
           and n.name == "phase_start"]
    assert fns and all(ast.unparse(next(a for a in f.args.args if a.arg == "parent_phase")
                                   .annotation) == "str | None" for f in fns)
