"""Triton model repositories (every config.pbtxt parsed into tritonclient's ModelConfig
protobuf) and a real tritonserver (the nvidia-pytriton wheel's binary, Python backend) serving
the Python-backend form of an exported ONNX: masks over HTTP and gRPC equal the local
Segmenter's, dynamic batching shows in the server's statistics, malformed requests get
Triton's errors and the server keeps serving."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgeseg.deploy.triton import Batching, build_triton, to_pbtxt, write_repository
from edgeseg.errors import EdgesegError
from tests._onnx_models import HW, tiny_meta, tiny_onnx

text_format = pytest.importorskip("google.protobuf.text_format")
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")


def parse_config(path: Path):
    """config.pbtxt -> ModelConfig: unknown field names or wrong types raise ParseError."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def dtype_name(value: int) -> str:
    return model_config_pb2.DataType.Name(value)


def meta_param(cfg) -> dict:
    return json.loads(cfg.parameters["edgeseg.meta"].string_value)


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("onnx")
    return {
        "dynamic": tiny_onnx(d / "dynamic.onnx"),
        "labels": tiny_onnx(d / "labels.onnx", argmax=True),
        "static": tiny_onnx(d / "static.onnx", dynamic_batch=False),
    }


def fake_engine(d: Path, *, batch_range: tuple[int, int] | None) -> Path:
    """A plan file (bytes unread by the writer) with a real sidecar, as a TensorRT build writes."""
    from edgeseg.artifacts.sidecar import EngineSidecar

    engine = d / "model.engine"
    engine.write_bytes(b"not a real engine")
    meta = tiny_meta()
    meta.precision = "fp16"
    meta.extra["outputs"] = ["logits"]
    h, w = HW
    profile = None
    if batch_range:
        lo, hi = batch_range
        profile = {"min": [lo, 3, h, w], "opt": [hi, 3, h, w], "max": [hi, 3, h, w]}
    EngineSidecar(trt_version="10.3.0.30", gpu_name="Orin", compute_capability="8.7",
                  precision="fp16", input_shape=[1, 3, h, w], profile=profile,
                  model=meta.to_dict()).write(engine)
    return engine


# ---------------------------------------------------------------------------------------------
# Configs


def test_onnxruntime_config(onnx_files, tmp_path):
    b = Batching(max_batch_size=8, preferred_batch_sizes=(2, 8), max_queue_delay_us=1500,
                 instances=2, kind="KIND_GPU")
    report = write_repository(tmp_path, onnx_files["dynamic"], name="desanet", batching=b)
    cfg = parse_config(tmp_path / "desanet" / "config.pbtxt")
    assert cfg.name == "desanet" and cfg.backend == "onnxruntime" and cfg.platform == ""
    assert cfg.max_batch_size == 8
    (inp,) = cfg.input
    assert (inp.name, dtype_name(inp.data_type), list(inp.dims)) == ("input", "TYPE_FP32",
                                                                    [3, *HW])
    (out,) = cfg.output
    assert (out.name, dtype_name(out.data_type), list(out.dims)) == ("logits", "TYPE_FP32",
                                                                    [19, *HW])
    assert out.label_filename == "labels.txt"
    assert list(cfg.dynamic_batching.preferred_batch_size) == [2, 8]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 1500
    (group,) = cfg.instance_group
    assert group.count == 2 and model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind) == "KIND_GPU"
    labels = (tmp_path / "desanet" / "labels.txt").read_text().splitlines()
    assert labels == tiny_meta().classes and len(labels) == 19
    copied = tmp_path / "desanet" / "1" / "model.onnx"
    assert copied.read_bytes() == onnx_files["dynamic"].read_bytes()
    assert meta_param(cfg)["classes"] == tiny_meta().classes
    assert meta_param(cfg)["input_hw"] == list(HW)
    assert report["models"]["desanet"]["max_batch_size"] == 8
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_labels_output_and_fixed_batch(onnx_files, tmp_path):
    write_repository(tmp_path, onnx_files["labels"], name="argmax")
    (out,) = parse_config(tmp_path / "argmax" / "config.pbtxt").output
    assert (out.name, dtype_name(out.data_type), list(out.dims)) == ("labels", "TYPE_UINT8", [*HW])

    report = write_repository(tmp_path, onnx_files["static"], name="static")
    cfg = parse_config(tmp_path / "static" / "config.pbtxt")
    assert cfg.max_batch_size == 0 and list(cfg.input[0].dims) == [1, 3, *HW]
    assert not cfg.HasField("dynamic_batching")
    assert "fixed batch" in report["models"]["static"]["batching"]


def test_tensorrt_plan_config(tmp_path):
    for batch_range, want_mbs, want_dims in (((1, 4), 4, [3, *HW]), (None, 0, [1, 3, *HW])):
        src = tmp_path / f"src{want_mbs}"
        src.mkdir()
        engine = fake_engine(src, batch_range=batch_range)
        repo = tmp_path / f"repo{want_mbs}"
        write_repository(repo, engine, name="trt",
                         batching=Batching(8, (4, 8), 100, kind="KIND_GPU"))
        cfg = parse_config(repo / "trt" / "config.pbtxt")
        assert cfg.platform == "tensorrt_plan" and cfg.max_batch_size == want_mbs
        assert list(cfg.input[0].dims) == want_dims
        assert dtype_name(cfg.input[0].data_type) == "TYPE_FP32"
        assert list(cfg.output[0].dims)[-3:] == [19, *HW]
        if want_mbs:  # capped at the profile's maximum
            assert list(cfg.dynamic_batching.preferred_batch_size) == [4]
        assert (repo / "trt" / "1" / "model.plan").read_bytes() == b"not a real engine"
        sidecar = json.loads((repo / "trt" / "1" / "model.plan.json").read_text())
        assert sidecar["gpu_name"] == "Orin" and sidecar["model"]["precision"] == "fp16"


def test_python_and_ensemble_configs(onnx_files, tmp_path):
    write_repository(tmp_path, onnx_files["dynamic"], name="seg", form="python")
    cfg = parse_config(tmp_path / "seg" / "config.pbtxt")
    assert cfg.backend == "python" and cfg.parameters["stage"].string_value == "segment"
    assert [(t.name, dtype_name(t.data_type), list(t.dims)) for t in cfg.input] == [
        ("image", "TYPE_UINT8", [-1, -1, 3])]
    assert [(t.name, dtype_name(t.data_type), list(t.dims)) for t in cfg.output] == [
        ("labels", "TYPE_UINT8", [-1, -1])]
    model_py = (tmp_path / "seg" / "1" / "model.py").read_text()
    assert "from edgeseg.deploy.triton_python import TritonPythonModel" in model_py

    report = write_repository(tmp_path, onnx_files["dynamic"], name="pipe", pipeline=True)
    ens = parse_config(tmp_path / "pipe" / "config.pbtxt")
    assert ens.platform == "ensemble" and ens.max_batch_size == 8
    steps = ens.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["pipe_pre", "pipe_net", "pipe_post"]
    assert dict(steps[0].input_map) == {"image": "image"}
    assert dict(steps[0].output_map) == {"input": "net_input", "size": "image_size"}
    assert dict(steps[1].input_map) == {"input": "net_input"}
    assert dict(steps[2].input_map) == {"logits": "net_output", "size": "image_size"}
    assert dict(steps[2].output_map) == {"labels": "labels"}
    net = parse_config(tmp_path / "pipe_net" / "config.pbtxt")
    assert net.backend == "onnxruntime"
    pre = parse_config(tmp_path / "pipe_pre" / "config.pbtxt")
    assert [(t.name, list(t.dims)) for t in pre.output] == [("input", [3, *HW]), ("size", [2])]
    post = parse_config(tmp_path / "pipe_post" / "config.pbtxt")
    assert post.parameters["stage"].string_value == "postprocess"
    assert set(report["models"]) == {"pipe", "pipe_pre", "pipe_net", "pipe_post"}
    assert (tmp_path / "pipe" / "1").is_dir()  # Triton needs the ensemble's version directory


def test_pbtxt_strings_round_trip():
    text = 'say "hi" \\ back\nslash'
    cfg = text_format.Parse(
        to_pbtxt({"name": "m", "parameters": [{"key": "k", "value": {"string_value": text}}]}),
        model_config_pb2.ModelConfig())
    assert cfg.parameters["k"].string_value == text


def test_rewrite_replaces_and_refuses_bad_input(onnx_files, tmp_path):
    write_repository(tmp_path, onnx_files["dynamic"], name="m")
    (tmp_path / "m" / "stale.txt").write_text("old")
    write_repository(tmp_path, onnx_files["labels"], name="m")
    assert not (tmp_path / "m" / "stale.txt").exists()
    assert parse_config(tmp_path / "m" / "config.pbtxt").output[0].name == "labels"
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"x")
    with pytest.raises(EdgesegError, match="ONNX or a TensorRT engine"):
        write_repository(tmp_path, ckpt)
    with pytest.raises(EdgesegError, match="needs an engine"):
        write_repository(tmp_path, onnx_files["dynamic"], form="plan")
    with pytest.raises(EdgesegError, match="model name"):
        write_repository(tmp_path, onnx_files["dynamic"], name="a/b")
    with pytest.raises(EdgesegError, match="--dynamic"):
        write_repository(tmp_path, onnx_files["static"], name="p", pipeline=True)
    with pytest.raises(EdgesegError, match="preferred batch size 16"):
        Batching(max_batch_size=8, preferred_batch_sizes=(16,))
    with pytest.raises(EdgesegError, match="instance kind"):
        Batching(kind="KIND_TPU")


def test_batching_from_profile():
    from edgeseg.profiles import Profile, load_profile

    prof = load_profile("x86-cpu")
    data = prof.to_dict()
    data["serving"] = {"max_batch_size": 16, "preferred_batch_sizes": [8, 16],
                       "max_queue_delay_us": 500, "instances": 2}
    serving = Profile.from_dict(data, name="srv")
    b = Batching.from_profile(serving)
    assert (b.max_batch_size, b.preferred_batch_sizes, b.max_queue_delay_us, b.instances,
            b.kind) == (16, (8, 16), 500, 2, "KIND_CPU")
    assert Profile.from_dict(serving.to_dict(), name="again").serving == serving.serving
    assert Batching.from_profile(prof, max_batch_size=2).preferred_batch_sizes == ()
    data["serving"]["preferred_batch_sizes"] = [32]
    with pytest.raises(EdgesegError, match="serving.preferred_batch_sizes"):
        Profile.from_dict(data, name="bad")


def test_url_and_levels_parsing():
    from edgeseg.bench.concurrency import parse_levels
    from edgeseg.runtime.triton_backend import parse_url

    assert parse_url("localhost:8001") == ("grpc", "localhost:8001")
    assert parse_url("localhost:8000") == ("http", "localhost:8000")
    assert parse_url("http://127.0.0.1:9000/") == ("http", "127.0.0.1:9000")
    with pytest.raises(EdgesegError):
        parse_url("ftp://x:1")
    with pytest.raises(EdgesegError):
        parse_url("nohostport")
    assert parse_levels("1,2,4,8") == [1, 2, 4, 8]
    with pytest.raises(EdgesegError):
        parse_levels("0,2")


# ---------------------------------------------------------------------------------------------
# A real server


@pytest.fixture(scope="module")
def server(onnx_files, tmp_path_factory) -> Iterator[object]:
    from edgeseg.deploy.tritonserver import TritonServer, find_tritonserver
    from edgeseg.errors import MissingDependencyError

    try:
        find_tritonserver()
    except MissingDependencyError as e:
        if __import__("os").environ.get("CI"):
            raise  # CI installs the wheel (Makefile): it must run there
        pytest.skip(f"no tritonserver binary: {e}")
    repo = tmp_path_factory.mktemp("triton") / "repo"
    # A long queue delay so that concurrent requests meet in the batcher on a busy machine.
    b = Batching(max_batch_size=8, preferred_batch_sizes=(4, 8), max_queue_delay_us=50_000)
    write_repository(repo, onnx_files["dynamic"], name="seg", form="python", batching=b)
    write_repository(repo, onnx_files["dynamic"], name="pipe", form="python", pipeline=True,
                     batching=b)
    srv = TritonServer(repo, ready_timeout_s=180)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def local(onnx_files):
    from edgeseg.runtime.onnxruntime_backend import OnnxRuntimeSegmenter

    return OnnxRuntimeSegmenter(onnx_files["dynamic"], threads=1)


def frames() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((64, 128), (50, 70),
                                                                       (97, 203))]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_server_masks_equal_local(server, local, protocol):
    from edgeseg.runtime import open_segmenter

    url = server.http_url if protocol == "http" else server.grpc_url
    for model in ("seg", "pipe", "pipe_net"):
        remote = open_segmenter(url, backend="triton", model=model, protocol=protocol)
        assert remote.takes_images == (model != "pipe_net")
        assert remote.meta.classes == local.meta.classes and remote.meta.input_hw == HW
        for frame in frames():
            got, want = remote(frame), local(frame)
            assert got.dtype == np.uint8 and got.shape == frame.shape[:2]
            assert np.array_equal(got, want), (model, protocol, frame.shape)
            assert len(np.unique(want)) > 3  # a mask with structure, not one class
        remote.close()
    # issue 32 item 8: the flag is --triton-model (--model is something else on `run`)
    with pytest.raises(EdgesegError, match="give --triton-model [(]edgeseg models: .*pipe"):
        open_segmenter(url, backend="triton", protocol=protocol)
    # issue 32 item 6: the Python models hand outputs over without a traceback per tensor
    assert "Traceback" not in server.log() and "PyCapsule_GetPointer" not in server.log()


def test_dynamic_batching_in_server_statistics(server, local):
    from edgeseg.bench.concurrency import measure_concurrency
    from edgeseg.runtime.triton_backend import TritonSegmenter

    probe = TritonSegmenter(server.grpc_url, model="seg")
    before = probe.statistics()["model_stats"][0]
    done: list[tuple[np.ndarray, np.ndarray]] = []
    lock = threading.Lock()

    def make_call():
        seg = TritonSegmenter(server.grpc_url, model="seg")

        def call(frame: np.ndarray) -> np.ndarray:
            labels = seg(frame)
            with lock:
                done.append((frame, labels))
            return labels

        call.close = seg.close  # type: ignore[attr-defined]
        return call

    (row,) = measure_concurrency(make_call, frames()[:1], [6], duration_s=3.0, warmup_s=0.5,
                                 max_requests=300)
    assert row["concurrency"] == 6 and row["requests"] > 0 and row["throughput_fps"] > 0
    assert row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]
    stats = probe.statistics()["model_stats"][0]
    sizes = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats["batch_stats"]}
    assert max(sizes) > 1, f"no batch above 1 in the server's batch_stats: {sizes}"
    n_requests = int(stats["inference_stats"]["success"]["count"]) - int(
        before.get("inference_stats", {}).get("success", {}).get("count", 0))
    executions = int(stats["execution_count"]) - int(before.get("execution_count", 0))
    assert executions < n_requests  # several requests per model execution
    frame = frames()[0]
    want = local(frame)
    agree = np.mean([np.mean(labels == want) for _, labels in done])  # batched vs batch 1
    assert agree > 0.999
    probe.close()


def test_malformed_requests_get_triton_errors(server, local):
    from tritonclient import grpc, http

    from edgeseg.runtime.triton_backend import TritonSegmenter

    client = grpc.InferenceServerClient(server.grpc_url)
    bad_shape = grpc.InferInput("image", [1, 32, 32, 4], "UINT8")
    bad_shape.set_data_from_numpy(np.zeros((1, 32, 32, 4), np.uint8))
    with pytest.raises(grpc.InferenceServerException, match="shape"):
        client.infer("seg", [bad_shape])
    bad_dtype = grpc.InferInput("image", [1, 32, 32, 3], "FP32")
    bad_dtype.set_data_from_numpy(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(grpc.InferenceServerException, match="(?i)data.?type|datatype"):
        client.infer("pipe", [bad_dtype])
    hclient = http.InferenceServerClient(server.http_url)
    wrong_name = http.InferInput("pixels", [1, 8, 8, 3], "UINT8")
    wrong_name.set_data_from_numpy(np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(http.InferenceServerException):
        hclient.infer("seg", [wrong_name])
    hclient.close()
    client.close()
    # The client backend turns them into one-line errors; the server still serves.
    seg = TritonSegmenter(f"http://{server.http_url}", model="seg")
    with pytest.raises(EdgesegError, match="takes images"):
        seg(np.zeros((16, 16, 4), np.uint8))
    with pytest.raises(EdgesegError, match="takes images"):
        seg.infer(np.zeros((1, 3, *HW), np.float32))
    with pytest.raises(EdgesegError, match="'nope'"):
        TritonSegmenter(f"http://{server.http_url}", model="nope")
    assert server.alive() and server.ready()
    frame = frames()[1]
    assert np.array_equal(seg(frame), local(frame))
    seg.close()


def test_export_builder_writes_a_batching_repository(tmp_path):
    """The `--format triton` row: a torch model -> dynamic-batch ONNX -> repository."""
    from tests.test_deepstream import tiny_torch_model

    steps: list[str] = []
    report = build_triton(tiny_torch_model(), tiny_meta(), tmp_path,
                          {"triton_name": "m", "triton_pipeline": True}, steps.append)
    assert any("repository" in s for s in steps) and report["onnx"]["dynamic"] is True
    net = parse_config(tmp_path / "m_net" / "config.pbtxt")
    assert net.backend == "onnxruntime" and net.max_batch_size == 8
    assert list(net.input[0].dims) == [3, -1, -1]  # dynamic export: spatial dims too
    assert parse_config(tmp_path / "m" / "config.pbtxt").platform == "ensemble"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bench_cli_concurrency_against_the_server(server, tmp_path, protocol):
    # issue 32 item 5: each worker thread builds its own client (tritonclient.http's greenlet
    # clients cannot switch threads); the server log stays free of tracebacks
    from typer.testing import CliRunner

    from edgeseg.cli import app

    out = tmp_path / "bench.json"
    url = server.http_url if protocol == "http" else server.grpc_url
    res = CliRunner().invoke(app, [
        "bench", "--backend", "triton", "--url", f"{protocol}://{url}", "--triton-model",
        "pipe", "--concurrency", "1,2", "--duration-s", "3", "--warmup-s", "0.5",
        "--frame-size", "48x96", "--json", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "Cannot switch to a different thread" not in res.output
    assert "Traceback" not in server.log(), server.log()[-2000:]
    report = json.loads(out.read_text())
    assert report["model"] == "pipe" and report["protocol"] == protocol
    assert [r["concurrency"] for r in report["concurrency"]] == [1, 2]
    assert all(r["requests"] > 0 and r["throughput_fps"] > 0 for r in report["concurrency"])
    bad = CliRunner().invoke(app, ["bench", "--backend", "onnxruntime", "--concurrency", "2"])
    assert bad.exit_code == 2 and "--backend triton" in bad.output
    bad = CliRunner().invoke(app, ["bench", "--backend", "triton", "--url", "127.0.0.1:1"])
    assert bad.exit_code == 2 and "unreachable" in bad.output


def test_run_batched_splits_per_request(onnx_files):
    """Requests the batcher merged come back split per request, equal to one-by-one calls,
    whether the network takes the batch (dynamic ONNX) or runs frame by frame (fixed batch)."""
    from edgeseg.deploy.triton_python import run_batched
    from edgeseg.runtime.onnxruntime_backend import OnnxRuntimeSegmenter

    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(n, 3, *HW)).astype(np.float32) for n in (2, 1, 3)]
    for name, batched in (("dynamic", True), ("static", False)):
        seg = OnnxRuntimeSegmenter(onnx_files[name], threads=1)
        outs = run_batched(seg, xs, batched)
        assert [len(o) for o in outs] == [2, 1, 3]
        for x, y in zip(xs, outs):
            ref = np.concatenate([seg.infer(f[None]) for f in x])
            assert np.allclose(y, ref, atol=1e-5)
    assert run_batched(seg, [], False) == []


def test_run_cli_through_the_server(server, local, tmp_path):
    """`edgeseg run --backend triton --url ...`: the video pipeline (preprocess -> infer ->
    postprocess on its threads) against the server's image model, masks saved per frame."""
    import cv2
    from typer.testing import CliRunner

    from edgeseg.cli import app

    src = tmp_path / "frames"
    src.mkdir()
    for i, f in enumerate(frames()[:2]):
        cv2.imwrite(str(src / f"{i:03d}.png"), f)
    out = tmp_path / "masks"
    res = CliRunner().invoke(app, [
        "run", "--backend", "triton", "--url", f"http://{server.http_url}", "--triton-model",
        "pipe", "--source", str(src), "--sink", str(out), "--masks", "trainids", "--json"])
    assert res.exit_code == 0, res.output
    written = sorted(out.glob("*_labelTrainIds.png"))
    assert len(written) == 2, sorted(out.rglob("*"))
    for f, path in zip(frames()[:2], written):
        assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), local(f))
    bad = CliRunner().invoke(app, ["run", "--backend", "triton", "--model", "x.onnx",
                                   "--source", str(src)])
    assert bad.exit_code == 2 and "--backend triton" in bad.output
