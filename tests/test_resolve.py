"""One way in: `--model` for every artifact kind, one model check, one precision list, one
size rule, one profile load per job, and the old flags as deprecated aliases."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeseg.artifacts.resolve import MODEL_KINDS, ModelRef, parse_model, resolve_model
from edgeseg.cli import app
from edgeseg.errors import EdgesegError

PKG = Path(__file__).resolve().parents[1] / "edgeseg"


@pytest.mark.parametrize("spec, kind", [
    ("last.pt", "checkpoint"), ("m.PTH", "checkpoint"), ("m.onnx", "onnx"),
    ("m.engine", "engine"), ("m.plan", "engine"), ("desanet-hn", "variant"),
    ("desanet-rn", "variant"), ("triton://10.0.0.2:8001/desanet", "triton"),
])
def test_one_table_dispatches_every_kind(spec: str, kind: str) -> None:
    ref = parse_model(spec)
    assert ref.kind == kind and ref.backend == MODEL_KINDS[kind][1]


def test_triton_reference_carries_server_and_name() -> None:
    ref = parse_model("triton://localhost:8000/seg")
    assert (ref.url, ref.name) == ("localhost:8000", "seg")
    assert parse_model("triton://localhost:8001").name is None  # the server's one model
    with pytest.raises(EdgesegError, match="triton://HOST:PORT/NAME"):
        parse_model("triton:///seg")


def test_unknown_model_names_every_form() -> None:
    with pytest.raises(EdgesegError) as e:
        parse_model("model.tflite")
    for how, _ in MODEL_KINDS.values():
        assert how in str(e.value)


def test_resolve_checks_count_kind_file_and_random_init(tmp_path: Path) -> None:
    ckpt = tmp_path / "a.pt"
    ckpt.write_bytes(b"x")
    assert resolve_model(ckpt) == ModelRef("checkpoint", path=ckpt)
    assert resolve_model(weights=ckpt) == ModelRef("checkpoint", path=ckpt)  # the old keyword
    with pytest.raises(EdgesegError, match="give one model, with --model .got --model and --onnx"):
        resolve_model(ckpt, onnx=tmp_path / "b.onnx")
    with pytest.raises(EdgesegError, match="no model: give --model"):
        resolve_model(command="bench")
    assert resolve_model(required=False) is None
    with pytest.raises(EdgesegError, match="ONNX file not found"):
        resolve_model(tmp_path / "missing.onnx")
    (tmp_path / "dir.pt").mkdir()
    with pytest.raises(EdgesegError, match="checkpoint is a folder"):
        resolve_model(weights=tmp_path / "dir.pt")
    with pytest.raises(EdgesegError, match="--onnx .*a.pt: expected a .onnx file"):
        resolve_model(onnx=ckpt)
    with pytest.raises(EdgesegError, match="calibrate takes .* not .*m.engine"):
        resolve_model(tmp_path / "m.engine", accepts=("checkpoint", "onnx"), command="calibrate")
    with pytest.raises(EdgesegError, match="is a variant, not a trained model"):
        resolve_model("desanet-hn", accepts=("checkpoint", "variant"))
    assert resolve_model("desanet-hn", random_init=True, accepts=("variant",)).random_init
    with pytest.raises(EdgesegError, match="--random-init goes with a variant name"):
        resolve_model(ckpt, random_init=True)
    with pytest.raises(EdgesegError, match="--random-init needs --model"):
        resolve_model(random_init=True)


def test_one_precision_list_and_one_model_check_in_the_package() -> None:
    defined = {}
    checks = {}
    for path in PKG.rglob("*.py"):
        text = path.read_text()
        if re.search(r"^PRECISIONS(: [^=]+)? = ", text, re.M):
            defined[path.relative_to(PKG).as_posix()] = True
        if re.search(r"exactly one of --weights|give exactly one", text):
            checks[path.relative_to(PKG).as_posix()] = True
    assert list(defined) == ["precision.py"]
    assert not checks  # every entry point goes through resolve_model


def test_height_without_width_is_one_rule_in_export_and_bench(tmp_path: Path) -> None:
    runner = CliRunner()
    for command in (["export", "--out", str(tmp_path / "m.onnx")], ["bench", "--cost-only"]):
        r = runner.invoke(app, [*command, "--random-init", "--model", "desanet-hn",
                                "--height", "256"])
        assert r.exit_code == 2, r.output
        assert "--height needs --width too: give both (a size is HxW)" in r.output, r.output
    assert not (tmp_path / "m.onnx").exists()


def test_old_flags_print_one_deprecation_line_and_still_work(tmp_path: Path) -> None:
    missing = tmp_path / "gone.pt"
    for cmd in (["bench", "--weights", str(missing)], ["export", "--weights", str(missing),
                                                        "--out", str(tmp_path / "m.onnx")],
                ["eval", "--weights", str(missing), "--data", str(tmp_path)]):
        r = CliRunner().invoke(app, cmd)
        lines = r.output.strip().splitlines()
        assert lines[0] == "warning: --weights is deprecated: use --model", r.output
        # the old flag reached the resolver: the checkpoint was looked for
        assert lines[-1] == f"error: checkpoint not found: {missing}" and len(lines) == 2


def test_web_token_is_not_the_triton_token(tmp_path: Path) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    r = CliRunner().invoke(app, ["run", "--model", str(onnx), "--source", "0", "--sink",
                                 "http://127.0.0.1:0", "--token", "T"])
    assert r.exit_code == 2
    assert "--token is the Triton client's bearer token; a web sink's is --web-token" in r.output


def test_profile_is_read_once_per_job(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeseg.bench.report import run_bench
    from edgeseg.profiles import store

    reads: list[str] = []
    real = store.validate_profile

    def counting(path):  # noqa: ANN001, ANN202
        reads.append(str(path))
        return real(path)

    monkeypatch.setattr(store, "validate_profile", counting)
    prof = store.load_profile("x86-cpu")
    assert store.load_profile(prof) is prof and len(reads) == 1  # a loaded profile passes
    run_bench(random_init=True, model="desanet-hn", profile=prof, cost_only=True,
              height=64, width=128, reference_s=0.05, compare="onnxruntime:fp32,torch:fp32")
    assert len(reads) == 1  # two configurations, no second read


def test_ros_mask_size_is_hxw_like_every_size() -> None:
    from edgeseg.ros.node import parse_mask_size

    assert parse_mask_size("64x128", (32, 64)) == (64, 128)  # H first, as --crop / --frame-size
    assert parse_mask_size("network", (32, 64)) == (32, 64) and parse_mask_size("input", (1, 1)) is None
    with pytest.raises(EdgesegError, match="even"):
        parse_mask_size("65x64", (32, 64))
