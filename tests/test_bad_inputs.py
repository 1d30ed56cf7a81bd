"""Bad input, every command: exit 2, one `error:` line naming the cause, no traceback, nothing
left behind (issue 18, section 3). Plus the unit checks behind the matrix: the --device parser,
train config types and ranges, the minimum crop, resume across variants, file modes of atomic
writes. docs/ARCHITECTURE.md ("Bad input") lists the matrix.

Everything runs in-process through typer's CliRunner on tiny or corrupt artifacts made once in
a module fixture; nothing trains.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from edgeseg.errors import EdgesegError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HW = (64, 128)


@pytest.fixture(scope="module")
def art(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Inputs good and bad: a tiny dataset, an untrained HN checkpoint (resumable), text files
    named like models, truncated and foreign checkpoints and ONNX files."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.data.synthetic import write_synthetic_cityscapes
    from edgeseg.models.desanet import build_model
    from edgeseg.train.checkpoint import default_meta, save_checkpoint

    d = tmp_path_factory.mktemp("bad_inputs")
    data = d / "data"
    write_synthetic_cityscapes(data, train=2, val=1, height=HW[0], width=HW[1], seed=0)
    torch.manual_seed(0)
    hn = d / "hn.pt"
    save_checkpoint(hn, {
        "model": build_model("desanet-hn").state_dict(), "optimizer": {}, "scheduler": {},
        "iteration": 1, "meta": default_meta("desanet-hn", HW).to_dict(),
    })
    raw = hn.read_bytes()
    (d / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    torch.save({"weights": torch.zeros(3)}, d / "foreign.pt")
    for name in ("notes.pt", "notes.onnx", "notes.engine", "notes.mp4"):
        (d / name).write_text("not a model, just some text\n")
    (d / "notes.yaml").write_text("device: [unclosed\n")
    (d / "empty").mkdir()

    # a valid ONNX without edgeseg metadata, and the same truncated
    w = numpy_helper.from_array(torch.ones(64, 64).numpy(), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [w],
    )
    foreign = d / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), foreign)
    blob = foreign.read_bytes()
    (d / "truncated.onnx").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(Exception, match="(?i)pars|decod|truncat|protobuf"):  # really unreadable
        onnx.load(str(d / "truncated.onnx"))
    return SimpleNamespace(dir=d, data=data, hn=hn)


def _invoke(args: list[str]):
    from typer.testing import CliRunner

    from edgeseg.cli import app

    return CliRunner().invoke(app, args, env={"CI": "true", "COLUMNS": "200"})


def _assert_one_line_error(result, expect: str) -> str:
    """Exit 2, no traceback, exactly one `error:` line and it is the last line (progress lines
    of the steps before the failure and warnings may precede it)."""
    out = result.output
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert result.exit_code == 2, f"exit {result.exit_code}: {out[-2000:]}"
    assert "Traceback" not in out, out[-3000:]
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [ln for ln in lines if "error" in ln.lower()]
    assert len(errors) == 1 and lines[-1] == errors[0], out[-2000:]
    assert errors[0].startswith("error:"), errors[0]
    assert expect.lower() in errors[0].lower(), (expect, errors[0])
    return errors[0]


# -- the matrix ----------------------------------------------------------------------------------
# (command line with {placeholders}, text the error line must contain). {a} is the artifact
# folder, {data} the tiny dataset, {hn} the untrained HN checkpoint, {out} an empty folder that
# must stay empty.

T = ["train", "--data", "{data}", "--out", "{out}/run", "--split", "train", "--iters", "1",
     "--workers", "0", "--crop", "64x128", "--no-rmi"]

MATRIX: list[tuple[str, list[str], str]] = [
    # train
    ("train-data-missing", [*T[:2], "{a}/nope", *T[3:]], "nope"),
    ("train-data-file", [*T[:2], "{a}/notes.pt", *T[3:]], "notes.pt"),
    ("train-data-empty", [*T[:2], "{a}/empty", *T[3:]], "empty"),
    ("train-config-missing", [*T, "--config", "{a}/nope.yaml"], "nope.yaml"),
    ("train-config-corrupt", [*T, "--config", "{a}/notes.yaml"], "notes.yaml"),
    ("train-iters-0", [*T, "--iters", "0"], "--iters"),
    ("train-lr-negative", [*T, "--lr", "-1"], "lr"),
    ("train-crop-rmi", [*T[:-1], "--crop", "6x6"], "8x8"),
    ("train-crop-bn", [*T, "--crop", "4x4", "--batch", "1"], "33x33"),
    ("train-crop-garbage", [*T, "--crop", "big"], "--crop"),
    ("train-model-unknown", [*T, "--model", "desanet-xx"], "desanet-xx"),
    ("train-recipe-unknown", [*T, "--recipe", "fast"], "fast"),
    ("train-optimizer-unknown", [*T, "--optimizer", "adam"], "adam"),
    ("train-device-unknown", [*T, "--device", "gpu0"], "gpu0"),
    ("train-resume-missing", [*T, "--resume", "{a}/nope.pt"], "nope.pt"),
    ("train-resume-text", [*T, "--resume", "{a}/notes.pt"], "notes.pt"),
    ("train-resume-truncated", [*T, "--resume", "{a}/truncated.pt"], "truncated.pt"),
    ("train-resume-foreign", [*T, "--resume", "{a}/foreign.pt"], "foreign.pt"),
    ("train-resume-other-variant", [*T, "--resume", "{hn}", "--model", "desanet-rn"],
     "holds desanet-hn"),
    # eval
    ("eval-weights-missing", ["eval", "--model", "{a}/nope.pt", "--data", "{data}"], "nope.pt"),
    ("eval-weights-text", ["eval", "--model", "{a}/notes.pt", "--data", "{data}"], "notes.pt"),
    ("eval-weights-truncated", ["eval", "--model", "{a}/truncated.pt", "--data", "{data}"],
     "truncated.pt"),
    ("eval-weights-foreign", ["eval", "--model", "{a}/foreign.pt", "--data", "{data}"],
     "foreign.pt"),
    ("eval-weights-kind", ["eval", "--model", "{a}/notes.mp4", "--data", "{data}"], ".mp4"),
    ("eval-data-missing", ["eval", "--model", "{hn}", "--data", "{a}/nope",
                           "--save-pred", "{out}/pred"], "nope"),
    ("eval-split-unknown", ["eval", "--model", "{hn}", "--data", "{data}", "--split", "test2",
                            "--save-pred", "{out}/pred"], "test2"),
    ("eval-device-unknown", ["eval", "--model", "{hn}", "--data", "{data}", "--device", "gpu0"],
     "gpu0"),
    # export
    ("export-weights-missing", ["export", "--model", "{a}/nope.pt", "--out", "{out}/m.onnx"],
     "nope.pt"),
    ("export-weights-text", ["export", "--model", "{a}/notes.pt", "--out", "{out}/m.onnx"],
     "notes.pt"),
    ("export-weights-truncated", ["export", "--model", "{a}/truncated.pt",
                                  "--out", "{out}/m.onnx"], "truncated.pt"),
    ("export-format-unknown", ["export", "--model", "{hn}", "--format", "tflite",
                               "--out", "{out}/m.onnx"], "tflite"),
    ("export-precision-unknown", ["export", "--model", "{hn}", "--precision", "int4",
                                  "--out", "{out}/m.onnx"], "int4"),
    ("export-height-small", ["export", "--model", "{hn}", "--height", "16", "--width", "64",
                             "--out", "{out}/m.onnx"], "--height"),
    ("export-profile-unknown", ["export", "--model", "{hn}", "--profile", "nope-profile",
                                "--out", "{out}/m.onnx"], "nope-profile"),
    ("export-model-unknown", ["export", "--random-init", "--model", "desanet-xx",
                              "--out", "{out}/m.onnx"], "desanet-xx"),
    # calibrate
    ("calibrate-onnx-missing", ["calibrate", "--model", "{a}/nope.onnx", "--images", "{data}",
                                "--out", "{out}/cal"], "nope.onnx"),
    ("calibrate-onnx-text", ["calibrate", "--model", "{a}/notes.onnx", "--images", "{data}",
                             "--out", "{out}/cal"], "notes.onnx"),
    ("calibrate-onnx-truncated", ["calibrate", "--model", "{a}/truncated.onnx",
                                  "--images", "{data}", "--out", "{out}/cal"], "truncated.onnx"),
    ("calibrate-weights-truncated", ["calibrate", "--model", "{a}/truncated.pt",
                                     "--images", "{data}", "--out", "{out}/cal"], "truncated.pt"),
    ("calibrate-method-unknown", ["calibrate", "--model", "{hn}", "--images", "{data}",
                                  "--method", "median", "--out", "{out}/cal"], "median"),
    ("calibrate-profile-unknown", ["calibrate", "--model", "{hn}", "--images", "{data}",
                                   "--profile", "nope-profile", "--out", "{out}/cal"],
     "nope-profile"),
    ("calibrate-num-0", ["calibrate", "--model", "{hn}", "--images", "{data}", "--calib-images", "0",
                         "--out", "{out}/cal"], "--calib-images"),
    # bench
    ("bench-weights-missing", ["bench", "--model", "{a}/nope.pt", "--out", "{out}/b.json"],
     "nope.pt"),
    ("bench-weights-text", ["bench", "--model", "{a}/notes.pt", "--out", "{out}/b.json"],
     "notes.pt"),
    ("bench-onnx-text", ["bench", "--model", "{a}/notes.onnx", "--out", "{out}/b.json"],
     "notes.onnx"),
    ("bench-onnx-truncated", ["bench", "--model", "{a}/truncated.onnx", "--out", "{out}/b.json"],
     "truncated.onnx"),
    ("bench-onnx-foreign", ["bench", "--model", "{a}/foreign.onnx", "--out", "{out}/b.json"],
     "foreign.onnx"),
    ("bench-engine-text", ["bench", "--model", "{a}/notes.engine", "--out", "{out}/b.json"],
     "TensorRT"),  # no TensorRT here: that is the first thing said; with it, the file's fault
    ("bench-iters-0", ["bench", "--model", "{hn}", "--iters", "0", "--out", "{out}/b.json"],
     "--iters"),
    ("bench-compare-unknown", ["bench", "--model", "{hn}", "--compare", "torch:int4",
                               "--out", "{out}/b.json"], "int4"),
    ("bench-profile-unknown", ["bench", "--model", "{hn}", "--profile", "nope-profile",
                               "--out", "{out}/b.json"], "nope-profile"),
    ("bench-model-unknown", ["bench", "--random-init", "--model", "desanet-xx",
                             "--out", "{out}/b.json"], "desanet-xx"),
    ("bench-device-unknown", ["bench", "--model", "{hn}", "--device", "gpu0",
                              "--out", "{out}/b.json"], "gpu0"),
    # run
    ("run-weights-missing", ["run", "--model", "{a}/nope.pt", "--source", "{frames}",
                             "--sink", "{out}/masks"], "nope.pt"),
    ("run-weights-truncated", ["run", "--model", "{a}/truncated.pt", "--source",
                               "{frames}", "--sink", "{out}/masks"],
     "truncated.pt"),
    ("run-onnx-text", ["run", "--model", "{a}/notes.onnx", "--source", "{frames}",
                       "--sink", "{out}/masks"], "notes.onnx"),
    ("run-onnx-truncated", ["run", "--model", "{a}/truncated.onnx", "--source",
                            "{frames}", "--sink", "{out}/masks"], "truncated.onnx"),
    ("run-source-missing", ["run", "--model", "{hn}", "--source", "{a}/nope.mp4",
                            "--sink", "{out}/masks"], "nope.mp4"),
    ("run-source-corrupt", ["run", "--model", "{hn}", "--source", "{a}/notes.mp4",
                            "--sink", "{out}/o.mp4"], "notes.mp4"),
    ("run-alpha-range", ["run", "--model", "{hn}", "--source", "{frames}",
                         "--alpha", "2", "--sink", "{out}/masks"], "--alpha"),
    ("run-visualize-unknown", ["run", "--model", "{hn}", "--source", "{frames}",
                               "--visualize", "sparkles", "--sink", "{out}/masks"], "sparkles"),
    ("run-device-unknown", ["run", "--model", "{hn}", "--source", "{frames}",
                            "--device", "gpu0", "--sink", "{out}/masks"], "gpu0"),
    ("run-profile-unknown", ["run", "--model", "{hn}", "--source", "{frames}",
                             "--profile", "nope-profile", "--sink", "{out}/masks"],
     "nope-profile"),
    # info, profiles, data, demo
    ("info-model-unknown", ["info", "--model", "desanet-xx"], "desanet-xx"),
    ("info-height-small", ["info", "--height", "8"], "--height"),
    ("profiles-show-unknown", ["profiles", "show", "nope-profile"], "nope-profile"),
    ("profiles-validate-missing", ["profiles", "validate", "{a}/nope.yaml"], "nope.yaml"),
    ("profiles-command-unknown", ["profiles", "frobnicate"], "frobnicate"),
    ("data-synth-height-small", ["data", "synth", "--out", "{out}/ds", "--height", "4"],
     "--height"),
    ("data-synth-train-0", ["data", "synth", "--out", "{out}/ds", "--train", "0"], "--train"),
    ("data-synth-out-file", ["data", "synth", "--out", "{a}/notes.pt", "--train", "1",
                             "--val", "0", "--height", "16", "--width", "16"], "notes.pt"),
    ("demo-iters-0", ["demo", "--out", "{out}/demo", "--iters", "0"], "--iters"),
    ("demo-out-file", ["demo", "--out", "{a}/notes.pt", "--quick"], "notes.pt"),
    ("ros2-topics-missing", ["ros2", "topics", "{a}/nope.mcap"], "nope.mcap"),
    ("ros2-topics-wrong-kind", ["ros2", "topics", "{a}/notes.pt"], "not a bag"),
    ("ros2-topics-empty-folder", ["ros2", "topics", "{a}/empty"], "not a bag"),
    ("ros2-command-unknown", ["ros2", "frobnicate"], "frobnicate"),
    ("doctor-option-unknown", ["doctor", "--frobnicate"], "frobnicate"),
    ("tune-weights-missing", ["tune", "--model", "{a}/nope.pt", "--target-fps", "10",
                              "--out", "{out}/t.yaml"], "nope.pt"),
    ("tune-weights-text", ["tune", "--model", "{a}/notes.pt", "--target-fps", "10",
                           "--out", "{out}/t.yaml"], "notes.pt"),
    ("tune-space-unknown-key", ["tune", "--model", "{hn}", "--target-fps", "10",
                                "--space", "colour=red", "--out", "{out}/t.yaml"], "colour"),
    ("tune-target-negative", ["tune", "--model", "{hn}", "--target-fps", "-1",
                              "--out", "{out}/t.yaml"], "target"),
    ("tune-profile-unknown", ["tune", "--model", "{hn}", "--target-fps", "10",
                              "--profile", "nosuchboard", "--out", "{out}/t.yaml"], "nosuchboard"),
    ("command-unknown", ["frobnicate"], "frobnicate"),
]


@pytest.mark.parametrize("args,expect", [m[1:] for m in MATRIX], ids=[m[0] for m in MATRIX])
def test_bad_input_matrix(art: SimpleNamespace, tmp_path: Path, args: list[str],
                          expect: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    before = sorted(p.name for p in art.dir.iterdir())
    frames = f"{art.data}/leftImg8bit/val/*/*.png"
    filled = [a.format(a=art.dir, data=art.data, hn=art.hn, out=out, frames=frames) for a in args]
    _assert_one_line_error(_invoke(filled), expect)
    assert list(out.iterdir()) == [], "output left behind"
    assert sorted(p.name for p in art.dir.iterdir()) == before, "temporary file left behind"


def test_matrix_covers_every_command() -> None:
    from edgeseg.cli import app

    commands = {c.name for c in app.registered_commands} | {
        g.name for g in app.registered_groups}
    covered = {m[1][0] for m in MATRIX}
    assert commands <= covered, commands - covered


def test_usage_errors_are_one_line_in_a_real_process(tmp_path: Path) -> None:
    """The console script, not just CliRunner: click's boxed usage text is one line too."""
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "edgeseg"
    env = {**os.environ, "CI": "true", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([str(exe), "info", "--height", "8"], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "--height" in lines[0], proc.stderr


# -- --device ------------------------------------------------------------------------------------


def _fake_cuda(monkeypatch: pytest.MonkeyPatch, count: int = 3, current: int = 2) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current)


def test_device_cuda_means_the_current_device(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeseg.runtime.devices import parse_device

    _fake_cuda(monkeypatch)
    assert parse_device("cuda") == torch.device("cuda", 2)  # an index: set_device/DDP take it
    assert parse_device("auto") == torch.device("cuda", 2)
    assert parse_device(None) == torch.device("cuda", 2)
    assert parse_device("CUDA:1") == torch.device("cuda", 1)
    assert parse_device("cuda", local_rank=1) == torch.device("cuda", 1)  # torchrun
    assert parse_device("cpu") == torch.device("cpu")
    with pytest.raises(EdgesegError, match="no CUDA device 3"):
        parse_device("cuda:3")


@pytest.mark.parametrize("spec", ["gpu0", "gpu", "cuda:x", "cpu:1", "cuda:", "", "mps"])
def test_device_unknown_is_one_line(spec: str) -> None:
    from edgeseg.runtime.devices import parse_device

    with pytest.raises(EdgesegError, match="unknown device") as e:
        parse_device(spec)
    assert "\n" not in str(e.value)


def test_device_cuda_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeseg.runtime.devices import parse_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert parse_device("auto") == torch.device("cpu")
    for spec in ("cuda", "cuda:0"):
        with pytest.raises(EdgesegError, match="use --device cpu"):
            parse_device(spec)


def test_train_device_cuda_on_a_cpu_machine(
    art: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was `ValueError: Expected a torch.device with a specified index`; now one line before
    any output is written."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = [a.format(data=art.data, out=tmp_path) for a in T] + ["--device", "cuda"]
    _assert_one_line_error(_invoke(args), "no CUDA GPU")
    assert not (tmp_path / "run").exists()


def test_train_device_has_an_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """The training loop's device for `cuda`/`auto` (faked GPU): always indexed, the current
    device in one process and LOCAL_RANK's under torchrun."""
    from edgeseg.train.config import load_train_config
    from edgeseg.train.loop import Dist, _device

    _fake_cuda(monkeypatch, count=4, current=3)
    for spec in ("cuda", "auto"):
        cfg = load_train_config(None, device=spec)
        assert _device(cfg, Dist()) == torch.device("cuda", 3)
        assert _device(cfg, Dist(rank=1, world_size=2, local_rank=1)) == torch.device("cuda", 1)
    assert _device(load_train_config(None, device="cuda:2"), Dist()) == torch.device("cuda", 2)


def test_train_device_cuda_runs_on_the_current_gpu(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (torch sees none)")
    from edgeseg.train.config import load_train_config
    from edgeseg.train.loop import Dist, _device

    cfg = load_train_config(None, device="cuda")
    assert _device(cfg, Dist()) == torch.device("cuda", torch.cuda.current_device())


def test_eval_device_reaches_the_segmenter(
    art: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`eval --device`: cpu really evaluates; cuda:1 (a faked GPU) opens the checkpoint on
    cuda:1 with the argmax there."""
    from edgeseg import runtime
    from edgeseg.train.evaluate import evaluate

    report = evaluate(art.hn, art.data, "val", device="cpu")
    assert report["images"] == 1 and 0.0 <= report["miou"] <= 1.0

    seen: dict = {}

    def fake_open(path, backend=None, **opts):
        seen.update(opts)
        raise EdgesegError("stop here")

    _fake_cuda(monkeypatch)
    monkeypatch.setattr(runtime, "open_segmenter", fake_open)
    with pytest.raises(EdgesegError, match="stop here"):
        evaluate(art.hn, art.data, "val", device="cuda:1")
    assert seen == {"device": "cuda:1", "argmax": True}


# -- train config: types and ranges -------------------------------------------------------------


@pytest.mark.parametrize("line,key,expected", [
    ("lr: fast", "lr", "a number"),
    ('iters: "10"', "iters", "an integer"),
    ("iters: 10.5", "iters", "an integer"),
    ("batch: 0", "batch", ">= 1"),
    ("gridmask: 'yes'", "gridmask", "true or false"),
    ("crop: [64, big]", "crop", "two integers"),
    ("crop: 0", "crop", ">= 1"),
    ("scale: [2.0, 0.5]", "scale", "min <= max"),
    ("momentum: 1.5", "momentum", "[0, 1)"),
    ("weight_decay: -1", "weight_decay", ">= 0"),
    ("workers: -2", "workers", ">= 0"),
    ("seed: -1", "seed", "[0, 2**32)"),
    ("model: desanet-xx", "model", "desanet-hn"),
    ("device: gpu0", "device", "unknown device"),
    ("optimizer: 3", "optimizer", "a string"),
    ("backbone_weights: 5", "backbone_weights", "a string or null"),
    ("amp: maybe", "amp", "true or false or null"),
])
def test_config_yaml_types_and_ranges(tmp_path: Path, line: str, key: str, expected: str) -> None:
    from edgeseg.train.config import load_train_config

    cfg = tmp_path / "train.yaml"
    cfg.write_text(line + "\n")
    with pytest.raises(EdgesegError) as e:
        load_train_config(cfg)
    msg = str(e.value)
    assert msg.startswith(f"{cfg}: {key}: "), msg  # file, key, expected type
    assert expected in msg and "\n" not in msg


def test_config_valid_values_pass_and_coerce(tmp_path: Path) -> None:
    from edgeseg.train.config import load_train_config

    cfg = tmp_path / "train.yaml"
    cfg.write_text("lr: 1\ncrop: 96\nscale: [1, 2]\nbackbone_weights: null\namp: true\n")
    c = load_train_config(cfg)
    assert c.lr == 1.0 and isinstance(c.lr, float)
    assert c.crop == (96, 96) and c.scale == (1.0, 2.0) and c.amp is True
    # a flag's bad value names the key, without a file
    with pytest.raises(EdgesegError, match=r"^lr: expected > 0"):
        load_train_config(cfg, lr=-0.1)


# -- minimum crop --------------------------------------------------------------------------------


def _bn_forward_ok(variant: str, batch: int, hw: tuple[int, int]) -> bool:
    """The real model's training forward, shapes only (meta tensors: no compute)."""
    from edgeseg.models.desanet import build_model

    with torch.device("meta"):
        model = build_model(variant).train()
    try:
        model(torch.empty(batch, 3, *hw, device="meta"))
    except ValueError as e:
        assert "more than 1 value per channel" in str(e)
        return False
    return True


@pytest.mark.parametrize("variant", ["desanet-hn", "desanet-rn"])
def test_min_crop_matches_the_model(variant: str) -> None:
    """The stated BatchNorm limit is exactly where the real model starts to fail."""
    from edgeseg.train.limits import bn_values_per_channel, min_crop

    side = min_crop(batch=1, rmi=False)
    for batch, hw in ((1, (side, side)), (1, (side - 1, side)), (1, (side, side - 1)),
                      (1, (side, 4 * side)), (2, (4, 4)), (2, (1, 1))):
        predicted = bn_values_per_channel(hw, batch) > 1
        assert _bn_forward_ok(variant, batch, hw) == predicted, (batch, hw)


def test_min_crop_matches_the_rmi_loss() -> None:
    from edgeseg.train.limits import min_crop
    from edgeseg.train.losses import RMILoss

    side = min_crop(batch=2, rmi=True)
    rmi = RMILoss(3)
    for h, w in ((side, side), (side - 1, side), (side, side - 1)):
        logits = torch.randn(2, 3, h, w, dtype=torch.float64)
        target = torch.randint(0, 3, (2, h, w))
        if min(h, w) >= side:
            assert torch.isfinite(rmi(logits, target))
        else:
            with pytest.raises(ValueError, match="pooled map"):
                rmi(logits, target)


@pytest.mark.parametrize("kw,expect", [
    ({"crop": (6, 6), "rmi": True}, "at least 8x8"),
    ({"crop": (4, 4), "batch": 1, "rmi": False}, "at least 33x33"),
    ({"crop": (33, 32), "batch": 1, "rmi": False}, "--batch 2"),
])
def test_min_crop_is_stated_up_front(kw: dict, expect: str) -> None:
    from edgeseg.train.config import load_train_config

    with pytest.raises(EdgesegError, match="too small") as e:
        load_train_config(None, **kw)
    assert expect in str(e.value)
    load_train_config(None, **{**kw, "crop": (33, 33)})  # the stated minimum passes


# -- resume, data ----------------------------------------------------------------------------------


def test_resume_other_variant_names_the_checkpoint_variant(
    art: SimpleNamespace, tmp_path: Path
) -> None:
    from edgeseg.train.config import load_train_config
    from edgeseg.train.loop import train

    cfg = load_train_config(None, model="desanet-rn", data=str(art.data), out=str(tmp_path / "r"),
                            split="train", crop=HW, batch=2, iters=2, workers=0, rmi=False)
    with pytest.raises(EdgesegError) as e:
        train(cfg, resume=art.hn, log=lambda _m: None)
    assert str(e.value) == (f"{art.hn} holds desanet-hn weights, not desanet-rn: pass --model "
                            "desanet-hn (or start desanet-rn without --resume)")
    assert not (tmp_path / "r").exists()


def test_mismatched_weights_are_one_line(tmp_path: Path) -> None:
    """A state dict that does not fit: a count and the first key, not hundreds of names."""
    from edgeseg.models.desanet import build_model
    from edgeseg.train.checkpoint import default_meta, load_model, save_checkpoint

    bad = tmp_path / "bad.pt"
    state = {"head.extra.weight": torch.zeros(1)}
    save_checkpoint(bad, {"model": state, "meta": default_meta("desanet-hn", HW).to_dict()})
    with pytest.raises(EdgesegError, match=r"weights do not fit the model") as e:
        load_model(bad)
    assert "\n" not in str(e.value)
    assert re.search(r": \d{3} missing \(e\.g\. ", str(e.value)) and "1 unexpected (e.g. head.extra.weight)" in str(
        e.value)
    shapes = tmp_path / "shapes.pt"  # right names, wrong shapes
    state = {k: torch.zeros(1) for k in list(build_model("desanet-hn", aux=False).state_dict())}
    save_checkpoint(shapes, {"model": state, "meta": default_meta("desanet-hn", HW).to_dict()})
    with pytest.raises(EdgesegError, match=r"weights do not fit the model \(size mismatch") as e:
        load_model(shapes)
    assert "\n" not in str(e.value)


def test_bad_data_leaves_no_run_folder(tmp_path: Path) -> None:
    from edgeseg.train.config import load_train_config
    from edgeseg.train.loop import train

    out = tmp_path / "run"
    cfg = load_train_config(None, data=str(tmp_path / "nope"), out=str(out), crop=HW, batch=2,
                            iters=1, workers=0, rmi=False)
    with pytest.raises(EdgesegError):
        train(cfg, log=lambda _m: None)
    assert not out.exists()


# -- atomic writes keep the umask's mode --------------------------------------------------------


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o640
    os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_atomic_writers_use_the_umask_mode(tmp_path: Path, umask_027: int) -> None:
    """mkstemp's 0600 used to survive the rename: every atomic writer now gives the mode a
    plain open() gives (0640 under umask 027)."""
    from edgeseg.artifacts.files import atomic_output
    from edgeseg.atomic import atomic_path, atomic_write_text, current_umask, staging_dir
    from edgeseg.train.checkpoint import save_checkpoint

    assert current_umask() == 0o027
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert _mode(plain) == umask_027
    with atomic_path(tmp_path / "a.bin") as tmp:
        tmp.write_bytes(b"x")
    with atomic_output(tmp_path / "m.onnx") as tmp:  # what export and calibrate use
        tmp.write_bytes(b"x")
    atomic_write_text(tmp_path / "report.json", "{}")
    save_checkpoint(tmp_path / "c.pt", {"model": {}})
    for name in ("a.bin", "m.onnx", "report.json", "c.pt"):
        assert _mode(tmp_path / name) == umask_027, name
    assert _mode(staging_dir(tmp_path / "cal")) == 0o750
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [
        n for n in sorted(p.name for p in tmp_path.iterdir()) if n.startswith(".cal.")]


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    from edgeseg.atomic import atomic_path

    target = tmp_path / "m.onnx"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("export failed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
