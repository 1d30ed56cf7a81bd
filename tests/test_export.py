"""ONNX export: both variants x both deformable-conv modes, parity, metadata, argmax, dynamic
shapes, atomic writes and the CLI's one-line errors.

Exports take seconds each (torch.export + decomposition), so every model is exported once per
test session by :func:`exported` and shared (tests/test_runtime.py reuses it too).
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from edgeseg.artifacts.files import META_KEY, atomic_output, read_onnx_metadata
from edgeseg.deploy.onnx import add_labels_output, count_ops, export_onnx, parity_input
from edgeseg.errors import EdgesegError
from edgeseg.runtime.onnxruntime_backend import OnnxRuntimeSegmenter, make_session
from edgeseg.train.checkpoint import default_meta, file_sha256, save_model_only

HW = (128, 256)
CASES = [
    ("desanet-hn", "native"),
    ("desanet-hn", "portable"),
    ("desanet-rn", "native"),
    ("desanet-rn", "portable"),
]
# Each case is exported once, through the CLI from a checkpoint. Two of them also cover the
# options (exports are too slow to repeat per option): HN native with --argmax (labels output),
# RN native with --dynamic (RN: HarDNet's many concats make symbolic-shape tracing much slower).
ARGMAX = ("desanet-hn", "native")
DYNAMIC = ("desanet-rn", "native")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@functools.cache
def _workdir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="edgeseg-export-test-"))
    atexit.register(shutil.rmtree, d, True)
    return d


@functools.cache
def model_for(variant: str) -> torch.nn.Module:
    """A random-init model whose deformable conv really deforms: the zero-initialised offset
    conv gets small random weights and a bias of about +-1 pixel, so every tap samples off-grid
    and a wrong offset layout or interpolation would show in the parity check."""
    from edgeseg.models.desanet import build_model

    torch.manual_seed(0)
    model = build_model(variant, aux=False).eval()
    offset: Any = model.spatial_path.deform.offset  # type: ignore[union-attr]
    with torch.no_grad():
        offset.weight.normal_(0.0, 0.01)
        offset.bias.normal_(0.0, 1.0)
    return model


@functools.cache
def checkpoint_for(variant: str) -> Path:
    return save_model_only(_workdir() / f"{variant}.pt", model_for(variant),
                           default_meta(variant, HW))


@functools.cache
def exported(variant: str, dcn: str) -> tuple[Path, dict[str, Any]]:
    """(path, --json report) of `edgeseg export` of ``variant`` in ``dcn`` mode at 128x256."""
    out = _workdir() / f"{variant}-{dcn}.onnx"
    args = ["--model", str(checkpoint_for(variant)), "--dcn", dcn, "--out", str(out), "--json"]
    if (variant, dcn) == ARGMAX:  # and a profile, whose 512x1024 the flags override
        args += ["--argmax", "--profile", "x86-cpu", "--height", str(HW[0]), "--width", str(HW[1])]
    if (variant, dcn) == DYNAMIC:
        args.append("--dynamic")
    r = _cli(*args)
    assert r.exit_code == 0, r.output
    return out, json.loads(r.stdout)


def _ort_logits(path: Path, x: np.ndarray, output: str = "logits") -> np.ndarray:
    sess, _ = make_session(path)
    return sess.run([output], {"input": x})[0]


def _torch_logits(variant: str, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model_for(variant)(torch.from_numpy(x)).numpy()


# ------------------------------------------------------------------------------ export + parity


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "dcn"), CASES)
def test_export_parity_and_deform_op(variant: str, dcn: str) -> None:
    path, report = exported(variant, dcn)
    assert path.is_file() and report["bytes"] == path.stat().st_size
    assert report["format"] == "onnx" and report["precision"] == "fp32"
    assert report["parity"]["agreement"] >= 0.999
    assert report["parity"]["max_abs_diff"] < 1e-3
    ops = count_ops(onnx.load(str(path)))
    if dcn == "portable":
        assert ops["DeformConv"] == 0 and ops["GridSample"] > 0
        assert report["dcn_op"] == "GridSample"
    else:
        assert ops["DeformConv"] == 1
        assert report["dcn_op"] == "DeformConv"
    assert report["opset"] >= 19 and report["nodes"] == sum(ops.values())
    assert list(report["outputs"]) == ["labels" if (variant, dcn) == ARGMAX else "logits"]
    # only finished files in the output folder: no temp leftovers
    assert {p.suffix for p in _workdir().iterdir()} <= {".onnx", ".pt"}


def test_offsets_are_exercised() -> None:
    """The parity check means something only if the sampled positions are off the grid."""
    model: Any = model_for("desanet-hn")
    x = torch.from_numpy(parity_input(default_meta("desanet-hn", HW), *HW))
    seen: dict[str, torch.Tensor] = {}
    hook = model.spatial_path.deform.offset.register_forward_hook(
        lambda _m, _i, out: seen.setdefault("offset", out)
    )
    try:
        with torch.inference_mode():
            model.spatial_path(x)
    finally:
        hook.remove()
    off = seen["offset"]
    assert off.abs().mean() > 0.3 and (off - off.round()).abs().mean() > 0.1


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "dcn"), CASES)
def test_metadata_round_trip(variant: str, dcn: str) -> None:
    path, _ = exported(variant, dcn)
    meta = default_meta(variant, HW)
    seg = OnnxRuntimeSegmenter(path)
    for m in (seg.meta, read_onnx_metadata(path)):
        assert m.variant == variant
        assert m.classes == meta.classes and m.palette == meta.palette
        assert m.mean == pytest.approx(meta.mean) and m.std == pytest.approx(meta.std)
        assert m.input_hw == HW and m.precision == "fp32"
        assert m.extra["dcn"] == dcn and m.extra["dynamic"] == ((variant, dcn) == DYNAMIC)
        assert m.extra["checkpoint_sha256"] == file_sha256(checkpoint_for(variant))
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert next(iter(props)) == META_KEY  # whole ModelMeta first, for the engine sidecar
    assert json.loads(props["variant"]) == variant and json.loads(props["input_hw"]) == list(HW)
    # the TensorRT builder's reader finds the same metadata
    from edgeseg.deploy.tensorrt import onnx_model_meta

    assert onnx_model_meta(path)["variant"] == variant


@pytest.mark.slow
def test_dynamic_export_runs_at_two_sizes() -> None:
    path, report = exported(*DYNAMIC)
    assert report["input"]["shape"] == ["batch", 3, "height", "width"]
    seg = OnnxRuntimeSegmenter(path)
    assert seg.dynamic_input
    for shape in [(1, 3, 128, 256), (2, 3, 96, 160)]:
        x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
        got, ref = seg.infer(x), _torch_logits(DYNAMIC[0], x)
        assert got.shape == ref.shape == (shape[0], 19, *shape[2:])
        assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.999


@pytest.mark.slow
def test_argmax_export_outputs_uint8_labels() -> None:
    path, report = exported(*ARGMAX)
    assert report["outputs"] == {"labels": [1, *HW]} and report["profile"] == "x86-cpu"
    assert report["parity"]["labels_match_logits"] == 1.0  # checked inside the export
    seg = OnnxRuntimeSegmenter(path)
    assert seg.output_name == "labels" and seg.meta.extra["outputs"] == ["labels"]
    x = parity_input(seg.meta, *HW)
    labels = seg.infer(x)
    assert labels.dtype == np.uint8 and labels.shape == (1, *HW)
    assert (labels == _torch_logits(ARGMAX[0], x).argmax(1)).mean() >= 0.999
    out = seg(np.zeros((90, 160, 3), np.uint8))
    assert out.dtype == np.uint8 and out.shape == (90, 160)


@pytest.mark.slow
def test_labels_output_equals_argmax_of_logits() -> None:
    path, _ = exported("desanet-hn", "portable")
    proto = add_labels_output(onnx.load(str(path)), keep_logits=True)
    both = _workdir() / "labels+logits.onnx.tmp"
    onnx.save(proto, str(both))
    try:
        sess, _ = make_session(both)
        x = parity_input(default_meta("desanet-hn", HW), *HW)
        labels, logits = sess.run(["labels", "logits"], {"input": x})
    finally:
        both.unlink()
    assert labels.dtype == np.uint8 and labels.shape == (1, *HW)
    np.testing.assert_array_equal(labels, logits.argmax(1))


def test_fp16_export_of_a_small_deformable_net(tmp_path: Path) -> None:
    """fp16 graph (TensorRT 11 strongly typed builds): fp16 input and logits, checked against
    fp32 PyTorch with the fp16 threshold. A one-layer net keeps the export under a second."""
    from edgeseg.models.deform import DeformableConv2d

    torch.manual_seed(0)
    net = DeformableConv2d(3, 19, impl="native").eval()
    bias: Any = net.offset.bias
    with torch.no_grad():
        bias.normal_(0.0, 1.0)
    out = tmp_path / "tiny.onnx"
    report = export_onnx(net, default_meta("desanet-hn", (32, 48)), out, fp16=True)
    assert report["precision"] == "fp16" and report["parity"]["agreement"] >= 0.99
    seg = OnnxRuntimeSegmenter(out)
    assert seg.meta.precision == "fp16" and seg.describe()["input_dtype"] == "float16"
    assert seg(np.zeros((40, 60, 3), np.uint8)).shape == (40, 60)


# ------------------------------------------------------------------------------ failures


@pytest.mark.slow
def test_failed_parity_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reuse a finished graph as the 'exporter output' and demand impossible agreement."""
    path, _ = exported("desanet-hn", "portable")
    monkeypatch.setattr(
        torch.onnx, "export", lambda *a, **k: SimpleNamespace(model_proto=onnx.load(str(path)))
    )
    out = tmp_path / "m.onnx"
    with pytest.raises(EdgesegError, match="parity check failed"):
        export_onnx(model_for("desanet-hn"), default_meta("desanet-hn", HW), out,
                    dcn="portable", min_agreement=1.01)
    assert list(tmp_path.iterdir()) == []


def test_exporter_error_is_one_line_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("unsupported op foo\nlong traceback text")

    monkeypatch.setattr(torch.onnx, "export", boom)
    with pytest.raises(EdgesegError, match=r"^ONNX export failed: unsupported op foo$"):
        export_onnx(torch.nn.Conv2d(3, 19, 1), default_meta("desanet-hn", (64, 64)),
                    tmp_path / "m.onnx", parity=False)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments(tmp_path: Path) -> None:
    meta = default_meta("desanet-hn", (64, 64))
    net = torch.nn.Conv2d(3, 19, 1)
    with pytest.raises(EdgesegError, match="deformable conv mode"):
        export_onnx(net, meta, tmp_path / "x.onnx", dcn="dcnv2")
    with pytest.raises(EdgesegError, match="opset 17"):
        export_onnx(net, meta, tmp_path / "x.onnx", opset=17)
    with pytest.raises(EdgesegError, match="too small"):
        export_onnx(net, meta, tmp_path / "x.onnx", height=16, width=64)
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_keeps_old_file_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    out.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert out.read_text() == "old" and list(tmp_path.iterdir()) == [out]
    with atomic_output(out) as tmp:
        tmp.write_text("new")
    assert out.read_text() == "new" and list(tmp_path.iterdir()) == [out]


# ------------------------------------------------------------------------------ CLI


def _cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from edgeseg.cli import app

    return CliRunner().invoke(app, ["export", *args])


@pytest.mark.slow
def test_cli_table_lists_the_export() -> None:
    """Without --json the report is a rich table (on stderr)."""
    from edgeseg.cli._util import console
    from edgeseg.cli.export import _print_report

    _, report = exported("desanet-rn", "portable")
    with console.capture() as cap:
        _print_report(report)
    text = cap.get()
    for word in ("file", "size", "opset", "nodes", "GridSample", "parity", "agreement"):
        assert word in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "onnx"], "no model: give --model"),
        (["--model", "{tmp}/missing.pt"], "checkpoint not found"),
        (["--random-init", "--model", "desanet-hn", "--format", "tflite"], "--format: expected"),
        (["--random-init"], "--random-init needs --model"),
        (["--weights", "{tmp}/missing.pt", "--random-init", "--model", "desanet-hn"],
         "give one model"),
        (["--random-init", "--model", "desanet-hn", "--dcn", "v2"], "--dcn: expected"),
        (["--random-init", "--model", "desanet-hn", "--precision", "int8"], "calibrate"),
        (["--random-init", "--model", "desanet-hn", "--format", "engine"], "TensorRT is not"),
        (["--random-init", "--model", "desanet-hn", "--profile", "jetson-orin-nano"],
         "TensorRT is not"),  # the profile's backend picks --format engine
        (["--random-init", "--model", "desanet-hn", "--profile", "no-such-board"],
         "unknown profile"),
        (["--random-init", "--model", "desanet-hn", "--format", "engine", "--out", "{tmp}/m.onnx"],
         "--format engine writes a file ending in .engine"),
        (["--model", "{tmp}/missing.onnx", "--format", "engine"], "ONNX file not found"),
        (["--calibration-cache", "{tmp}/calibration.cache", "--format", "engine"],
         "calibration cache not found"),
        (["--random-init", "--model", "desanet-hn", "--format", "engine", "--precision", "int8",
          "--images", "{tmp}"], "TensorRT is not"),
    ],
)
def test_cli_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    from edgeseg.deploy.tensorrt import tensorrt_available

    if message == "TensorRT is not" and tensorrt_available():
        pytest.skip("TensorRT is installed here")
    name = "out.engine" if {"engine", "jetson-orin-nano"} & set(args) else "out.onnx"
    out = ["--out", str(tmp_path / name)] if "--out" not in args else []
    r = _cli(*[a.format(tmp=tmp_path) for a in args], *out, "--height", "64", "--width", "64")
    assert r.exit_code == 2, r.output
    # an old flag's one deprecation line may come first; then exactly one error line
    lines = [ln for ln in r.stderr.strip().splitlines() if "is deprecated: use" not in ln]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], r.stderr
    assert r.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_cli_requires_out() -> None:
    r = _cli("--random-init", "--model", "desanet-hn")
    assert r.exit_code == 2 and r.stderr.strip() == "error: --out is required: the file to " \
        "write (.onnx or .engine)"
