"""`edgeseg tune`: space, pruning, budget, resume, Pareto front, pick, written profile, errors.

One untrained DESANet-RN checkpoint (the faster variant to export) and a few synthetic
Cityscapes scenes at 96x192; the space is 96x192 and 64x128 x fp32/int8, one thread, short
timings. The first tune measures all four configurations; later tunes of the same out path
resume them from the record, so the file stays at a few measurements in all.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from edgeseg.errors import EdgesegError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

H, W = 96, 192
SPACE = f"size={H}x{W},64x128;precision=fp32,int8;dcn=native;threads=1"
FAST: dict[str, Any] = {"eval_images": 3, "calib_images": 4, "duration_s": 0.3,
                        "warmup_s": 0.05, "reference_s": 0.05}


def _cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from edgeseg.cli import app

    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(untrained RN checkpoint, Cityscapes-layout root with train and val scenes)."""
    import torch

    from edgeseg.artifacts.checkpoint import default_meta
    from edgeseg.data.synthetic import write_synthetic_cityscapes
    from edgeseg.models.desanet import build_model
    from edgeseg.train.checkpoint import save_model_only

    d = tmp_path_factory.mktemp("tune")
    torch.manual_seed(0)
    model = build_model("desanet-rn", aux=False).eval()
    ckpt = save_model_only(d / "rn.pt", model, default_meta("desanet-rn", (H, W)))
    root = d / "data"
    write_synthetic_cityscapes(root, train=4, val=3, height=H, width=W, seed=0)
    return ckpt, root


@pytest.fixture(scope="module")
def first(inputs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tune that every configuration reaches (target 0.01 FPS): all four are measured."""
    from edgeseg.tune.tune import tune

    ckpt, root = inputs
    out = tmp_path_factory.mktemp("tuned") / "tuned.yaml"
    return tune(weights=ckpt, profile="x86-cpu", target_fps=0.01, data=root, space=SPACE,
                out=out, **FAST)


def _gap_target(fps: list[float]) -> float:
    """A target in the middle (geometric) of the widest gap between measured FPS figures, so
    the pick clears it by a margin that timing noise does not eat."""
    f = sorted(fps, reverse=True)
    ratios = [(f[i] / f[i + 1], i) for i in range(len(f) - 1)]
    _, i = max(ratios)
    return math.sqrt(f[i] * f[i + 1])


@pytest.fixture(scope="module")
def second(first: dict[str, Any], inputs: tuple[Path, Path]) -> dict[str, Any]:
    """The same tune resumed with a target some configurations miss."""
    from edgeseg.tune.tune import tune

    ckpt, root = inputs
    target = _gap_target([r["fps"] for r in first["measured"]])
    lines = Path(first["files"]["record"]).read_text().count("\n")
    report = tune(weights=ckpt, profile="x86-cpu", target_fps=target, data=root, space=SPACE,
                  out=first["files"]["profile"], min_agreement=0.0, **FAST)
    report["_record_lines_before"] = lines
    return report


# --------------------------------------------------------------------------------------------
# Pure parts


def test_size_ladder_keeps_aspect_and_multiples_of_32() -> None:
    from edgeseg.tune.space import size_ladder

    assert size_ladder(1024, 2048) == [(1024, 2048), (768, 1536), (512, 1024), (384, 768),
                                       (256, 512)]
    for h, w in size_ladder(720, 1280):
        assert h % 32 == 0 and w % 32 == 0
        assert abs(w / h - 1280 / 720) < 0.15


def test_space_product_and_overrides() -> None:
    from edgeseg.profiles import load_profile
    from edgeseg.tune.space import default_space, parse_space

    base = default_space(load_profile("x86-cpu"), (512, 1024), cores=2)
    assert len(base.configs()) == 5 * 2 * 2 * 2  # sizes x precision x dcn x threads {1, 2}
    sp = parse_space("size=256x512,384x768;precision=fp32,int8;threads=1,2", base)
    assert len(sp.configs()) == 2 * 2 * 2 * 2
    assert {c.backend for c in sp.configs()} == {"onnxruntime"}
    trt = parse_space("backend=tensorrt;size=256x512;precision=int8;dla=gpu,0;cuda_graphs=on",
                      base).configs()
    assert {(c.dla, c.cuda_graphs, c.threads) for c in trt} == {("gpu", "on", None),
                                                                ("0", "on", None)}


@pytest.mark.parametrize("spec, message", [
    ("colour=red", "unknown key 'colour'"),
    ("size=100x200", "not a multiple of 32"),
    ("precision=fp64", "unknown value 'fp64'"),
    ("threads=two", "expected integers"),
    ("size=64x128;size=96x192", "given twice"),
    ("size", "expected key=value"),
])
def test_space_errors(spec: str, message: str) -> None:
    from edgeseg.tune.space import Space, parse_space

    with pytest.raises(EdgesegError, match=message):
        parse_space(spec, Space({"size": [(64, 128)]}))


@pytest.mark.parametrize("text, seconds", [("15m", 900.0), ("90s", 90.0), ("1h30m", 5400.0),
                                           ("2.5", 2.5)])
def test_parse_budget(text: str, seconds: float) -> None:
    from edgeseg.durations import parse_duration  # the one parser of every --time-budget

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "0", "5x", ""])
def test_parse_budget_errors(text: str) -> None:
    from edgeseg.durations import parse_duration

    with pytest.raises(EdgesegError, match="--time-budget"):
        parse_duration(text)


def test_cpu_peak_from_cpuinfo(tmp_path: Path) -> None:
    from edgeseg.tune.prune import cpu_peak_gflops, this_cpu

    assert cpu_peak_gflops({"avx2", "fma"}, 2, 3.0) == (192.0, 32)
    assert cpu_peak_gflops({"avx512f", "avx2", "fma"}, 1, 2.0) == (128.0, 64)
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\ncpu MHz\t\t: 2000.000\nflags\t\t: sse avx avx2 fma\n\n")
    cpu = this_cpu(info, tmp_path / "no-cpufreq", cores=2)
    assert cpu["gflops"] == pytest.approx(2 * 2.0 * 1.5 * 32)  # turbo headroom 1.5
    (tmp_path / "max").write_text("3500000\n")  # kHz
    assert this_cpu(info, tmp_path / "max", cores=1)["gflops"] == pytest.approx(3.5 * 32)


def test_record_skips_a_line_cut_by_a_kill(tmp_path: Path) -> None:
    from edgeseg.tune.record import Record

    rec = Record(tmp_path / "r.jsonl")
    rec.add({"hash": "a", "fps": 1.0})
    with open(rec.path, "a") as f:
        f.write('\n{"hash": "b", "fp')  # killed mid-line
    again = Record(rec.path)
    assert set(again.rows) == {"a"}
    again.add({"hash": "c", "fps": 3.0})
    assert set(Record(rec.path).rows) == {"a", "c"}


def _dominated(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """b dominates a: faster-or-equal and more-or-equally accurate, strictly better once."""
    fa, fb = a["fps"], b["fps"]
    qa = -a["miou_drop"] if a.get("miou_drop") is not None else a["agreement"]
    qb = -b["miou_drop"] if b.get("miou_drop") is not None else b["agreement"]
    return fb >= fa and qb >= qa and (fb > fa or qb > qa)


def test_pareto_and_pick_on_known_points() -> None:
    from edgeseg.tune.pareto import pareto_front
    from edgeseg.tune.tune import pick_config

    rows = [{"fps": 10, "agreement": 0.90}, {"fps": 5, "agreement": 0.99},
            {"fps": 4, "agreement": 0.95}, {"fps": 12, "agreement": 0.80},
            {"fps": 10, "agreement": 0.85}]
    assert sorted(pareto_front(rows)) == [0, 1, 3]  # 2 and 4 are dominated
    assert pick_config(rows, 8, None, 0.85) == (0, True)  # most accurate at >= 8 FPS
    assert pick_config(rows, 8, None, 0.95) == (1, False)  # none: the fastest within 0.95
    assert pick_config(rows, 100, None, None) == (3, False)


# --------------------------------------------------------------------------------------------
# Whole tunes


def test_first_tune_measures_the_space(first: dict[str, Any]) -> None:
    assert first["space_size"] == 4
    assert len(first["measured"]) == 4 and not first["left"] and not first["pruned"]
    assert first["met_target"]
    ref = [r for r in first["measured"] if r["config"]["height"] == H
           and r["config"]["precision"] == "fp32"]
    assert ref[0]["agreement"] == 1.0 and ref[0]["miou_drop"] == pytest.approx(0.0)
    # all meet the tiny target: the pick is the most accurate (smallest mIoU drop; an
    # untrained net can gain mIoU when smaller, so not necessarily the reference)
    ok = [r for r in first["measured"] if r["miou_drop"] <= 1.0]
    assert first["measured"][first["pick"]]["miou_drop"] == min(r["miou_drop"] for r in ok)
    for r in first["measured"]:
        assert r["fps"] > 0 and r["e2e_fps"] > 0 and r["p99_ms"] > 0
        assert 0.0 <= r["agreement"] <= 1.0 and r["miou"] is not None
    # a roofline ceiling is an upper bound of what was measured
    assert all(r["fps"] <= r["fps_ceiling"] for r in first["measured"])
    files = first["files"]
    for key in ("profile", "onnx", "plot", "report", "record"):
        assert Path(files[key]).is_file(), key
    assert Path(files["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    int8 = [p for p in Path(files["artifacts"]).glob("*-int8.onnx")]
    assert len(int8) == 2  # one INT8 model per size, kept beside the profile


def test_pareto_front_has_no_dominated_point(first: dict[str, Any]) -> None:
    rows, front = first["measured"], set(first["pareto"])
    assert front
    for i in range(len(rows)):
        dominated = any(_dominated(rows[i], rows[j]) for j in range(len(rows)) if j != i)
        assert dominated == (i not in front), rows[i]["label"]


def test_resume_skips_measured_configurations(second: dict[str, Any]) -> None:
    # every configuration the new target leaves (its ceiling may prune some) comes from the
    # record of the first tune: none is measured again
    kept = 4 - len(second["pruned"])
    assert kept >= 1
    assert len(second["resumed"]) == kept and len(second["measured"]) == kept
    record = Path(second["files"]["record"]).read_text()
    assert record.count("\n") == second["_record_lines_before"]  # nothing measured again


def test_pick_re_measured_meets_the_target(second: dict[str, Any]) -> None:
    target = second["target_fps"]
    assert second["met_target"], second["message"]
    pick = second["measured"][second["pick"]]
    assert pick["fps"] >= target
    faster = [r for r in second["measured"] if r["fps"] >= target]
    assert pick["miou_drop"] == min(r["miou_drop"] for r in faster)  # labels: mIoU ranks
    files = second["files"]
    c = second["pick_config"]
    r = _cli("bench", "--model", files["onnx"], "--profile", files["profile"], "--threads",
             str(c["threads"]), "--duration-s", "1", "--warmup-s", "0.2", "--json")
    assert r.exit_code == 0, r.output
    bench = json.loads(r.stdout)
    assert bench["input_hw"] == [c["height"], c["width"]]
    assert bench["precision"] == c["precision"]
    assert bench["fps"] >= target, (bench["fps"], target)


def test_written_profile_validates_and_carries_the_pick(second: dict[str, Any]) -> None:
    from edgeseg.profiles import validate_profile

    path = second["files"]["profile"]
    r = _cli("profiles", "validate", path)
    assert r.exit_code == 0, r.output
    prof = validate_profile(path)
    c = second["pick_config"]
    assert (prof.deploy.backend, prof.deploy.precision, prof.deploy.height, prof.deploy.width) \
        == ("onnxruntime", c["precision"], c["height"], c["width"])


def test_budget_with_an_injected_clock(first: dict[str, Any], inputs: tuple[Path, Path]) -> None:
    """Two threads double the space; the four 2-thread configurations are new. The clock
    advances 10 s per reading and the budget is 25 s: one measurement always, then readings
    at 10 and 20 s allow two more, the one at 30 s stops the fourth."""
    from edgeseg.tune.tune import tune

    ckpt, root = inputs
    ticks = iter(range(0, 10_000, 10))
    report = tune(weights=ckpt, profile="x86-cpu", target_fps=0.01, data=root,
                  space=SPACE.replace("threads=1", "threads=1,2"), out=first["files"]["profile"],
                  budget_s=25, clock=lambda: float(next(ticks)), **FAST)
    assert len(report["resumed"]) == 4
    assert len(report["measured"]) == 7 and len(report["left"]) == 1
    assert report["left"][0].endswith("2t")
    assert "budget of 25 s spent after 3 measurements" in report["message"]


def test_unreachable_target_gives_the_fastest(first: dict[str, Any], inputs: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    from edgeseg.models.desanet import build_model
    from edgeseg.models.summary import count_gflops

    ckpt, root = inputs
    target = 1e7
    r = _cli("tune", "--model", str(ckpt), "--profile", "x86-cpu", "--target-fps", str(target),
             "--data", str(root), "--space", SPACE, "--out", first["files"]["profile"],
             "--eval-images", "3", "--calib-images", "4", "--duration-s", "0.3",
             "--warmup-s", "0.05", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert not report["met_target"] and report["all_pruned"]
    within = report["measured"][report["pick"]]["miou_drop"] <= 1.0  # the default bound
    assert ("picked the fastest within the accuracy bound" if within else
            "picked the most accurate (none meets the bound)") in report["message"]
    assert len(report["pruned"]) == 3 and len(report["measured"]) == 1
    # every pruned ceiling is below the target, and is work / peak: GFLOPs counted here
    net = build_model("desanet-rn", aux=False)
    for p in report["pruned"] + [{"roofline": None}]:
        if p["roofline"] is None:
            continue
        roof = p["roofline"]
        assert p["fps_ceiling"] < target
        g = count_gflops(net, p["config"]["height"], p["config"]["width"])
        assert roof["gflops"] == pytest.approx(g, rel=1e-6)
        assert p["fps_ceiling"] == pytest.approx(1000.0 * roof["peak_tflops"] / g, rel=1e-6)
    # the measured one has the highest ceiling: the smallest int8 model
    m = report["measured"][0]["config"]
    assert (m["height"], m["precision"]) == (64, "int8")


def test_pruned_ceilings_are_below_the_target(first: dict[str, Any],
                                              inputs: tuple[Path, Path]) -> None:
    """A target between the ceilings: what is pruned lies below it, the rest above."""
    from edgeseg.tune.tune import tune

    ckpt, root = inputs
    report = json.loads(Path(first["files"]["report"]).read_text())
    ceilings = sorted(r["fps_ceiling"] for r in report["measured"])
    target = math.sqrt(ceilings[0] * ceilings[-1])
    again = tune(weights=ckpt, profile="x86-cpu", target_fps=target, data=root, space=SPACE,
                 out=first["files"]["profile"], min_agreement=0.0, **FAST)
    assert again["pruned"] and again["measured"]
    assert all(p["fps_ceiling"] < target for p in again["pruned"])
    assert all(r["fps_ceiling"] >= target for r in again["measured"])
    assert len(again["pruned"]) + len(again["measured"]) == 4


def test_unknown_space_key_is_one_line_exit_2(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, _root = inputs
    r = _cli("tune", "--model", str(ckpt), "--profile", "x86-cpu", "--target-fps", "10",
             "--space", "colour=red", "--out", str(tmp_path / "t.yaml"))
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "unknown key 'colour'" in lines[0], r.output
    assert not (tmp_path / "t.yaml").exists()


@pytest.mark.parametrize("args, message", [
    (["--target-fps", "0"], "--target-fps must be > 0"),
    (["--target-fps", "5", "--max-miou-drop", "1"], "needs labels"),
    (["--target-fps", "5", "--time-budget", "soon"], "--time-budget"),
])
def test_errors_are_one_line(inputs: tuple[Path, Path], tmp_path: Path, args: list[str],
                             message: str) -> None:
    ckpt, _root = inputs
    r = _cli("tune", "--model", str(ckpt), "--out", str(tmp_path / "t.yaml"), *args)
    assert r.exit_code == 2, r.output
    assert message in r.output and len(r.output.strip().splitlines()) == 1, r.output
