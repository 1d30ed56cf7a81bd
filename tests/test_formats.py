"""The export format table, `edgeseg export --formats`, the source/sink registry and the public
Python API (issue 19)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.cli import app
from edgeseg.deploy.formats import FORMATS, availability, get_format
from edgeseg.errors import EdgesegError
from edgeseg.video import registry
from edgeseg.video.registry import IOKind

runner = CliRunner()


def _tensorrt_here() -> bool:
    from edgeseg.runtime.trt_engine import tensorrt_available

    return tensorrt_available()


def test_formats_json_lists_every_format_with_availability() -> None:
    res = runner.invoke(app, ["export", "--formats", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["format"]: r for r in json.loads(res.output)["formats"]}
    assert set(rows) == set(FORMATS)
    assert rows["onnx"]["available"] is True and rows["onnx"]["missing"] == []
    if not _tensorrt_here():
        for name in ("engine", "torch2trt"):
            assert rows[name]["available"] is False
            missing = {m["name"]: m for m in rows[name]["missing"]}
            assert "TensorRT" in missing
            assert missing["TensorRT"]["reason"] and missing["TensorRT"]["install"]


def test_formats_table_for_people() -> None:
    res = runner.invoke(app, ["export", "--formats"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for name in FORMATS:
        assert name in res.output


def test_table_rows_are_complete() -> None:
    for name, row in FORMATS.items():
        assert row.name == name
        assert row.precisions and set(row.precisions) <= {"fp32", "fp16", "int8"}
        assert row.builder.count(":") == 1
        assert callable(row.build.__func__)  # type: ignore[attr-defined]
        for req in row.requires:
            ok, reason = req.status()
            assert isinstance(ok, bool) and reason
            assert req.install


def test_builders_resolve_to_functions() -> None:
    from edgeseg.deploy.formats import _resolve

    for row in FORMATS.values():
        assert callable(_resolve(row.builder))


def test_request_is_validated_before_any_work(tmp_path: Path) -> None:
    from edgeseg.deploy.export import export

    with pytest.raises(EdgesegError, match="--format: expected one of"):
        export(tmp_path / "m.onnx", random_init=True, model="desanet-hn", fmt="tflite")
    with pytest.raises(EdgesegError, match="calibrate"):
        export(tmp_path / "m.onnx", random_init=True, model="desanet-hn", fmt="onnx",
               precision="int8")
    with pytest.raises(EdgesegError, match=r"\.engine"):
        export(tmp_path / "m.onnx", random_init=True, model="desanet-hn", fmt="engine")
    assert not list(tmp_path.iterdir())


# a non-default value for every format-specific option
_GIVEN = {"normalize_in_graph": True, "dynamic": True, "argmax": True, "images": "frames/",
          "calibration_cache": "calibration.cache", "num_images": 8, "triton_pipeline": True,
          "triton_form": "python", "triton_name": "seg", "max_batch_size": 4,
          "sources": ("a.mp4",), "plugin_lib": "libplugin.so", "segmentation_threshold": 0.5}


def test_every_option_has_a_flag_a_value_here_and_a_format_taking_it() -> None:
    from edgeseg.deploy.export_settings import OPTIONS

    assert set(_GIVEN) == set(OPTIONS)
    taken = {name for f in FORMATS.values() for name in f.options}
    assert taken == set(OPTIONS), "an option no format takes, or a row naming an unknown one"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("option", sorted(_GIVEN))
def test_an_option_the_format_ignores_is_an_error_naming_its_formats(fmt: str, option: str) -> None:
    from edgeseg.deploy.export_settings import OPTIONS, ExportSettings

    row, settings = FORMATS[fmt], ExportSettings.of({option: _GIVEN[option]})
    if option in row.options:
        row.check_options(settings)  # taken: no error
        return
    takers = [f for f in FORMATS if option in FORMATS[f].options]
    with pytest.raises(EdgesegError) as err:
        row.check_options(settings)
    msg = str(err.value)
    assert msg.startswith(f"{OPTIONS[option].flag} goes with --format {' or '.join(takers)}, "
                          f"not {fmt}"), msg
    assert "\n" not in msg


def test_export_settings_refuse_unknown_keys_and_keep_defaults() -> None:
    from edgeseg.deploy.export_settings import ExportSettings

    with pytest.raises(TypeError, match="unknown export settings: heigth"):
        ExportSettings.of({"heigth": 64})
    s = ExportSettings.of({"precision": None, "sources": ["a", "b"]})
    assert s.precision == "fp32" and s.sources == ("a", "b")
    assert ExportSettings.of(s) is s and s.but(height=64).height == 64 and s.height is None


def test_cli_flag_for_another_format_is_one_line(tmp_path: Path) -> None:
    res = runner.invoke(app, ["export", "--model", "desanet-hn", "--random-init", "--format",
                              "torch2trt", "--dynamic", "--out", str(tmp_path / "m.engine")])
    assert res.exit_code == 2, res.output
    assert res.output.strip() == ("error: --dynamic goes with --format onnx or engine, not "
                                  "torch2trt (torch2trt engines have a static shape; triton and "
                                  "deepstream set the batch)")
    assert not list(tmp_path.iterdir())


def test_availability_matches_requirements() -> None:
    for row in availability():
        fmt = get_format(row["format"])
        assert row["available"] == (not fmt.missing())


# ---------------------------------------------------------------------------------------------
# Sources and sinks: one registry


class _FakeCapture:
    """A capture of a registered kind: two frames with stamps."""

    def __init__(self, spec: object) -> None:
        self.spec = spec
        self.n = 0
        self.last_stamp_ns: int | None = None
        self.last_frame_id = ""

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoCapture's name
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.n >= 2:
            return False, None
        self.n += 1
        self.last_stamp_ns, self.last_frame_id = 1_000 * self.n, "cam"
        return True, np.full((8, 8, 3), self.n, np.uint8)

    def release(self) -> None:
        pass

    def get(self, prop: int) -> float:
        return 0.0


def _open_null_sink(spec: object, **context: object):
    from edgeseg.video.sinks import NullSink

    assert set(context) >= {"classes", "palette", "fps", "masks"}
    return NullSink()


@pytest.fixture
def fake_kinds(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(registry.SOURCES, "fake", IOKind(
        "fake", f"{__name__}:_FakeCapture", schemes=("fake",), suffixes=(".fakebag",)))
    monkeypatch.setitem(registry.SINKS, "fakesink", IOKind(
        "fakesink", f"{__name__}:_open_null_sink", schemes=("fakesink",)))
    yield


def test_registered_source_parses_and_reads_with_stamps(fake_kinds: None) -> None:
    from edgeseg.video.reader import FrameSource
    from edgeseg.video.sources import parse_source

    spec = parse_source("rec.fakebag?topic=/cam&start=1")
    assert (spec.kind, spec.target, spec.query) == ("fake", "rec.fakebag", {"topic": "/cam", "start": "1"})
    src = FrameSource("fake://x").open()
    frames = list(src)
    src.close()
    assert [f.stamp_ns for f in frames] == [1000, 2000]
    assert [f.frame_id for f in frames] == ["cam", "cam"]
    assert [int(f.image[0, 0, 0]) for f in frames] == [1, 2]


def test_registered_sink_is_matched_before_builtins(fake_kinds: None) -> None:
    from edgeseg.video.sinks import NullSink, open_sink, parse_sink

    spec = parse_sink("fakesink://@:1234/x")
    assert spec.kind == "fakesink"
    assert isinstance(open_sink(spec, classes=["a"], palette=[(0, 0, 0)]), NullSink)
    assert parse_sink("out.mp4").kind == "video"  # built-ins unchanged


def test_unknown_scheme_is_one_line() -> None:
    from edgeseg.video.sources import parse_source

    with pytest.raises(EdgesegError, match="unknown scheme"):
        parse_source("nope://x")


# ---------------------------------------------------------------------------------------------
# Public API


def test_import_edgeseg_is_light_and_names_the_api() -> None:
    code = (
        "import sys, edgeseg\n"
        "heavy = sorted(m for m in ('torch', 'cv2', 'onnxruntime', 'onnx') if m in sys.modules)\n"
        "print(heavy, sorted(edgeseg.__all__))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("[] ")
    for name in ("train", "evaluate", "export", "calibrate", "bench", "run"):
        assert name in out.stdout


def test_api_names_are_the_library_functions() -> None:
    import edgeseg
    from edgeseg.bench.report import run_bench
    from edgeseg.deploy.export import export
    from edgeseg.deploy.quantize import calibrate
    from edgeseg.train.evaluate import evaluate
    from edgeseg.video.run import run

    assert edgeseg.export is export and edgeseg.run is run
    assert edgeseg.evaluate is evaluate and edgeseg.calibrate is calibrate
    import edgeseg.train.loop  # binds the subpackage attribute, which must stay callable

    assert callable(edgeseg.train) and callable(edgeseg.bench)
    with pytest.raises(EdgesegError):  # forwards to run_bench, which validates its input
        edgeseg.bench(weights=Path("missing.pt"))
    assert run_bench.__module__ == "edgeseg.bench.report"
