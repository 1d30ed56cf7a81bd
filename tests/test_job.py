"""resolve_job (issue 27): one frozen settings object per job, one precedence (flag > profile >
artifact metadata > default), the impossible combinations refused in one place, the profile
loaded once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import onnx
import pytest

from edgeseg.artifacts.files import write_onnx_metadata
from edgeseg.artifacts.job import IMPOSSIBLE, Job, resolve_job
from edgeseg.artifacts.sidecar import EngineSidecar
from edgeseg.errors import EdgesegError
from tests._onnx_models import tiny_meta, tiny_onnx


def _onnx(path: Path, *, precision: str = "fp32", dynamic: bool = False) -> Path:
    tiny_onnx(path, dynamic_batch=False)  # 64x128
    proto = onnx.load(str(path))
    write_onnx_metadata(proto, dataclasses.replace(tiny_meta(), precision=precision),
                        dynamic=dynamic)
    onnx.save(proto, str(path))
    return path


def _engine(path: Path, precision: str = "fp16") -> Path:
    path.write_bytes(b"not a real plan")
    EngineSidecar("10.3.0", "Orin", "8.7", precision, [1, 3, 64, 128],
                  model=tiny_meta().to_dict()).write(path)
    return path


def test_precedence_flag_profile_artifact_default(tmp_path: Path) -> None:
    m = _onnx(tmp_path / "m.onnx", dynamic=True)
    job = resolve_job("bench", model=m, default_hw=(512, 1024), default_precision="fp32")
    assert (job.input_hw, job.origin["input_hw"]) == ((64, 128), "artifact")
    assert (job.precision, job.origin["precision"]) == ("fp32", "artifact")
    job = resolve_job("bench", model=m, profile="x86-cpu")
    assert job.origin == {"input_hw": "profile", "precision": "profile"}
    assert job.input_hw == job.profile.deploy.input_hw
    job = resolve_job("bench", model=m, profile="x86-cpu", height=96, width=160,
                      precision="int8")
    assert (job.input_hw, job.precision) == ((96, 160), "int8")
    assert job.origin == {"input_hw": "flag", "precision": "flag"}
    # the flags are in the profile every later step reads
    assert job.profile.deploy.input_hw == (96, 160) and job.profile.deploy.precision == "int8"
    job = resolve_job("export", model="desanet-hn", random_init=True, accepts=("variant",),
                      default_hw=(512, 1024))
    assert (job.input_hw, job.origin["input_hw"], job.meta) == ((512, 1024), "default", None)


def test_job_is_frozen_and_the_profile_object_passes_through(tmp_path: Path) -> None:
    from edgeseg.profiles import load_profile

    prof = load_profile("x86-cpu")
    job = resolve_job("run", model=_onnx(tmp_path / "m.onnx"), profile=prof)
    assert job.profile is prof  # nothing re-read when nothing is overridden
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.precision = "int8"  # type: ignore[misc]
    assert isinstance(job, Job) and job.kind == "onnx" and job.path == tmp_path / "m.onnx"


def test_a_fixed_onnx_keeps_its_size_and_refuses_another(tmp_path: Path) -> None:
    m = _onnx(tmp_path / "fixed.onnx")
    job = resolve_job("calibrate", model=m, profile="x86-cpu")
    # a profile's size is the size checkpoints are exported at; this file has its own
    assert (job.input_hw, job.origin["input_hw"]) == ((64, 128), "artifact")
    assert resolve_job("calibrate", model=m, height=64, width=128).input_hw == (64, 128)
    with pytest.raises(EdgesegError) as err:
        resolve_job("calibrate", model=m, height=96, width=160)
    assert str(err.value) == (
        f"--height/--width 96x160: fixed.onnx is fixed at 64x128 "
        f"({IMPOSSIBLE['size-of-fixed-artifact']}; give the checkpoint, or export with "
        "--dynamic)")
    dyn = _onnx(tmp_path / "dyn.onnx", dynamic=True)
    assert resolve_job("bench", model=dyn, height=96, width=160).input_hw == (96, 160)


def test_precision_fixed_by_an_engine_or_a_qdq_onnx(tmp_path: Path) -> None:
    eng = _engine(tmp_path / "m.engine", "fp16")
    assert resolve_job("run", model=eng).precision == "fp16"
    with pytest.raises(EdgesegError, match=r"^--precision int8: m.engine is a fp16 engine \("):
        resolve_job("run", model=eng, precision="int8")
    q = _onnx(tmp_path / "q.onnx", precision="int8")
    assert resolve_job("bench", model=q, precision="int8").precision == "int8"
    with pytest.raises(EdgesegError, match="is a Q/DQ ONNX"):
        resolve_job("bench", model=q, precision="fp16")
    with pytest.raises(EdgesegError, match="--precision: expected one of fp32, fp16, int8"):
        resolve_job("bench", model=q, precision="fp64")


def test_bad_flags_are_one_line_naming_the_flag(tmp_path: Path) -> None:
    m = _onnx(tmp_path / "m.onnx", dynamic=True)
    with pytest.raises(EdgesegError, match="^--height needs --width too"):
        resolve_job("bench", model=m, height=64)
    with pytest.raises(EdgesegError, match="^--height: "):
        resolve_job("bench", model=m, profile="x86-cpu", height=100_000, width=64)


def test_export_and_calibrate_read_the_profile_once(tmp_path: Path, monkeypatch) -> None:
    import edgeseg.profiles as profiles

    real, reads = profiles.load_profile, []

    def counting(p):  # type: ignore[no-untyped-def]
        reads.append(p)
        return real(p)

    monkeypatch.setattr(profiles, "load_profile", counting)
    from edgeseg.deploy.export import export

    m = _onnx(tmp_path / "m.onnx")
    with pytest.raises(EdgesegError, match="--format engine"):  # after the profile is read
        export(tmp_path / "out.onnx", model=m, profile="x86-cpu", fmt="onnx")
    assert reads == ["x86-cpu"]
