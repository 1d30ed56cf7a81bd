"""DeepStream export: nvinfer keys against DeepStream's documented list, the preprocessing
arithmetic against edgeseg's normalisation, the normalise-in-graph ONNX against the Segmenter,
and the deepstream-app config for several sources."""

from __future__ import annotations

import configparser
from pathlib import Path

import numpy as np
import pytest

from edgeseg.deploy.deepstream import (
    APP_CONFIG,
    INFER_CONFIG,
    build_deepstream,
    scale_and_offsets,
    write_deepstream,
)
from edgeseg.errors import EdgesegError
from tests._onnx_models import HW, tiny_meta, tiny_onnx

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KEYS_FILE = Path(__file__).parent / "data" / "nvinfer_keys.txt"


def documented_keys() -> set[str]:
    lines = KEYS_FILE.read_text().splitlines()
    return {ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")}


def read_ini(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(path.read_text())
    return cp


def tiny_torch_model():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 19, 1),
                         nn.Upsample(scale_factor=2, mode="bilinear")).eval()


@pytest.fixture(scope="module")
def normalized(tmp_path_factory) -> tuple[Path, dict]:
    """The export builder (the `--format deepstream` row): normalised ONNX + configs."""
    out = tmp_path_factory.mktemp("ds")
    steps: list[str] = []
    # batch 3: the batch-dynamic ONNX test_nvinfer_config_for_normalized_onnx's 3 sources need
    report = build_deepstream(tiny_torch_model(), tiny_meta(), out,
                              {"precision": "fp16", "batch_size": 3}, steps.append)
    assert report["format"] == "deepstream" and any("parity" in s for s in steps)
    assert (out / INFER_CONFIG).is_file() and (out / APP_CONFIG).is_file()
    return out / "model.onnx", report["onnx"]


def test_keys_file_names_its_source():
    head = KEYS_FILE.read_text().splitlines()[:4]
    assert any("Gst-nvinfer" in ln and "DeepStream" in ln for ln in head)
    assert {"network-type", "segmentation-threshold", "infer-dims"} <= documented_keys()


def test_normalized_graph_matches_segmenter(normalized):
    import onnxruntime as ort
    import torch

    from edgeseg.runtime.torch_backend import TorchSegmenter

    path, report = normalized
    assert report["parity"]["agreement"] >= 0.999
    assert report["meta"]["extra"]["normalize_in_graph"] is True
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["probs"]
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (*HW, 3), dtype=np.uint8)
    (probs,) = sess.run(["probs"], {"input": rgb.transpose(2, 0, 1)[None].astype(np.float32)})
    # Independent reference: the normalisation written out here, then the torch model.
    meta = tiny_meta()
    x = (rgb.astype(np.float32) / 255.0 - np.array(meta.mean, np.float32)) / np.array(
        meta.std, np.float32)
    with torch.inference_mode():
        logits = tiny_torch_model()(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))
        ref = torch.softmax(logits, 1).numpy()
    assert np.abs(probs - ref).max() < 1e-5
    labels = TorchSegmenter(tiny_torch_model(), meta)(np.ascontiguousarray(rgb[:, :, ::-1]))
    assert np.mean(probs[0].argmax(0) == labels) > 0.999


def test_nvinfer_config_for_normalized_onnx(normalized, tmp_path):
    path, _ = normalized
    report = write_deepstream(tmp_path, path, sources=["a.mp4", "rtsp://127.0.0.1/x",
                                                       "/dev/video0"])
    cp = read_ini(tmp_path / INFER_CONFIG)
    props = cp["property"]
    assert set(props) <= documented_keys(), set(props) - documented_keys()
    assert props["network-type"] == "2" and props["num-detected-classes"] == "19"
    assert props["output-blob-names"] == "probs" and props["infer-dims"] == f"3;{HW[0]};{HW[1]}"
    assert props["net-scale-factor"] == "1" and props["offsets"] == "0;0;0"
    assert props["model-color-format"] == "0" and props["onnx-file"] == path.name
    assert props["network-mode"] == "2" and props["batch-size"] == "3"
    assert "custom-lib-path" not in props and "model-engine-file" not in props
    labels = (tmp_path / props["labelfile-path"]).read_text().splitlines()
    assert labels == tiny_meta().classes
    assert (tmp_path / path.name).read_bytes() == path.read_bytes()
    assert report["properties"]["segmentation-threshold"] == "0"

    app = read_ini(tmp_path / APP_CONFIG)
    sources = [s for s in app.sections() if s.startswith("source")]
    assert sources == ["source0", "source1", "source2"]
    assert app["source0"]["type"] == "3" and app["source0"]["uri"].startswith("file:///")
    assert app["source1"]["uri"] == "rtsp://127.0.0.1/x"
    assert app["source2"]["type"] == "1" and app["source2"]["camera-v4l2-dev-node"] == "0"
    assert app["streammux"]["batch-size"] == "3" and app["primary-gie"]["batch-size"] == "3"
    assert (tmp_path / app["primary-gie"]["config-file"]).is_file()
    assert app["segvisual"]["enable"] == "1"
    assert int(app["tiled-display"]["rows"]) * int(app["tiled-display"]["columns"]) >= 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_uniform_std_folds_into_scale_and_offsets(tmp_path):
    """y = net-scale-factor * (x - offset) must equal (x/255 - mean)/std for every pixel value."""
    meta = tiny_meta()
    meta.std = (0.25, 0.25, 0.25)
    scale, offsets = scale_and_offsets(meta)
    x = np.arange(256, dtype=np.float64)
    for c in range(3):
        want = (x / 255.0 - meta.mean[c]) / meta.std[c]
        assert np.allclose(scale * (x - offsets[c]), want, atol=1e-9)
    with pytest.raises(EdgesegError, match="--normalize-in-graph"):
        scale_and_offsets(tiny_meta())  # ImageNet std differs per channel
    onnx_path = tiny_onnx(tmp_path / "plain.onnx")
    with pytest.raises(EdgesegError, match="--normalize-in-graph"):
        write_deepstream(tmp_path / "out", onnx_path)
    assert not (tmp_path / "out" / INFER_CONFIG).exists()
    labels_path = tiny_onnx(tmp_path / "labels.onnx", argmax=True)
    with pytest.raises(EdgesegError, match="--argmax"):
        write_deepstream(tmp_path / "out", labels_path)


def test_builder_refuses_before_exporting(tmp_path):
    for settings, match in (({"precision": "int8"}, "calibrated engine"),
                            ({"argmax": True}, "--argmax")):
        with pytest.raises(EdgesegError, match=match):
            build_deepstream(object(), tiny_meta(), tmp_path / "x", settings, print)
    assert not (tmp_path / "x" / "model.onnx").exists()


def test_engine_config_precision_and_plugin(tmp_path):
    from tests.test_triton import fake_engine

    src = tmp_path / "src"
    src.mkdir()
    engine = fake_engine(src, batch_range=None)
    sidecar = engine.with_name(engine.name + ".json")
    import json

    data = json.loads(sidecar.read_text())
    data["model"]["extra"].update(normalize_in_graph=True, outputs=["probs"], dcn="native")
    sidecar.write_text(json.dumps(data))
    out = tmp_path / "out"
    report = write_deepstream(out, engine, plugin_lib="/opt/plugins/libdcn.so")
    props = read_ini(out / INFER_CONFIG)["property"]
    assert set(props) <= documented_keys()
    assert props["model-engine-file"] == "model.engine" and "onnx-file" not in props
    assert props["network-mode"] == "2"  # the engine's fp16
    assert props["custom-lib-path"] == "/opt/plugins/libdcn.so"
    assert (out / "model.engine.json").is_file()
    assert report["notes"] == []
    report = write_deepstream(out, engine, precision="int8")
    assert read_ini(out / INFER_CONFIG)["property"]["network-mode"] == "1"
    assert "custom-lib-path" not in read_ini(out / INFER_CONFIG)["property"]
    assert any("ModulatedDeformConv2d" in n for n in report["notes"])


def test_normalized_onnx_runs_in_the_segmenter(normalized):
    """An ONNX with the normalisation inside is fed 0..255 RGB by the Segmenter itself, so
    `edgeseg run` on it gives the masks of the original model."""
    from edgeseg.runtime.onnxruntime_backend import OnnxRuntimeSegmenter
    from edgeseg.runtime.torch_backend import TorchSegmenter

    path, _ = normalized
    seg = OnnxRuntimeSegmenter(path, threads=1)
    assert seg.output_name == "probs"
    x = seg.preprocess(np.full((*HW, 3), 200, np.uint8))
    assert np.allclose(x, 200.0)  # no normalisation outside the graph
    rng = np.random.default_rng(5)
    bgr = rng.integers(0, 256, (80, 150, 3), dtype=np.uint8)
    want = TorchSegmenter(tiny_torch_model(), tiny_meta())(bgr)
    assert np.mean(seg(bgr) == want) > 0.999


def test_export_cli_deepstream_and_triton(tmp_path, monkeypatch):
    """`edgeseg export --format deepstream/triton` through the export library and its table."""
    from typer.testing import CliRunner

    from edgeseg.cli import app
    from edgeseg.models import desanet

    def tiny_build(*_a, **_k):
        net = tiny_torch_model()
        net.variant = "desanet-hn"  # what default_meta reads
        return net

    monkeypatch.setattr(desanet, "build_model", tiny_build)  # a real export, in seconds
    runner = CliRunner()
    res = runner.invoke(app, ["export", "--random-init", "--model", "desanet-hn", "--format",
                              "deepstream", "--height", "64", "--width", "128", "--out",
                              str(tmp_path / "ds"), "--source", "a.mp4", "--source", "b.mp4",
                              "--json"])
    assert res.exit_code == 0, res.output
    props = read_ini(tmp_path / "ds" / INFER_CONFIG)["property"]
    assert props["batch-size"] == "2" and props["network-mode"] == "2"
    bad = runner.invoke(app, ["export", "--random-init", "--model", "desanet-hn", "--format",
                              "onnx", "--out", str(tmp_path / "x.onnx"), "--source", "a.mp4"])
    assert bad.exit_code == 2 and "--format deepstream" in bad.output
    bad = runner.invoke(app, ["export", "--random-init", "--model", "desanet-hn", "--format",
                              "triton", "--out", str(tmp_path / "ds" / INFER_CONFIG)])
    assert bad.exit_code == 2 and "directory" in bad.output
    res = runner.invoke(app, ["export", "--random-init", "--model", "desanet-hn", "--format",
                              "triton", "--height", "64", "--width", "128", "--out",
                              str(tmp_path / "repo"), "--triton-pipeline", "--max-batch-size",
                              "4", "--triton-name", "seg", "--json"])
    assert res.exit_code == 0, res.output
    from tests.test_triton import parse_config

    assert parse_config(tmp_path / "repo" / "seg_net" / "config.pbtxt").max_batch_size == 4
    assert parse_config(tmp_path / "repo" / "seg" / "config.pbtxt").platform == "ensemble"
    listed = runner.invoke(app, ["export", "--formats", "--json"])
    names = [r["format"] for r in __import__("json").loads(listed.output)["formats"]]
    assert {"triton", "deepstream"} <= set(names)


def test_several_sources_export_a_batch_dynamic_onnx(tmp_path):
    # issue 32 item 7: two --source wrote batch-size=2 beside a static [1,3,H,W] ONNX, which
    # nvdsinfer refuses ("Backend has maxBatchSize 1 whereas 2 has been requested")
    import onnx

    from edgeseg.deploy.deepstream import onnx_max_batch, write_deepstream
    from edgeseg.runtime.onnxruntime_backend import make_session

    out = tmp_path / "ds"
    srcs = ["file:///a.mp4", "rtsp://cam/1"]
    report = build_deepstream(tiny_torch_model(), tiny_meta(), out,
                              {"precision": "fp16", "sources": srcs}, lambda _m: None)
    assert report["properties"]["batch-size"] == "2"
    dims = onnx.load(str(out / "model.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value") and [d.dim_value for d in dims[1:]] == [
        3, *tiny_meta().input_hw]  # batch only: H and W fixed
    sess, _ = make_session(out / "model.onnx", threads=1)
    x = np.zeros((2, 3, *tiny_meta().input_hw), np.float32)
    assert sess.run(None, {sess.get_inputs()[0].name: x})[0].shape[0] == 2
    # a static ONNX with several sources: refused, nothing written
    static = tmp_path / "s"
    build_deepstream(tiny_torch_model(), tiny_meta(), static, {"precision": "fp16"}, lambda _m: None)
    assert onnx_max_batch(static / "model.onnx") == 1
    with pytest.raises(EdgesegError, match="at most 1; nvinfer batch-size 2 needs a batch-dynamic"):
        write_deepstream(tmp_path / "t", static / "model.onnx", sources=srcs)
    assert not (tmp_path / "t").exists()
