"""`edgeseg bench` as a library: speed, stages, memory, power, model cost and roofline in one report.

:func:`run_bench` measures one configuration (backend x precision x input size) or several side
by side (``compare``) and returns a JSON-able dict; :func:`model_cost` and :func:`roofline_for`
are the no-timing parts (``--cost-only``). Conventions:

* **Speed.** A synthetic street frame (BGR uint8) goes through the :class:`Segmenter` methods.
  Warm-up runs until both ``warmup_s`` and ``min_warmup`` calls have passed
  (:func:`~edgeseg.bench.timing.time_callable`). ``latency_ms`` and ``fps`` time
  ``infer`` alone (network in, network out, host copies included); a second loop of as many
  frames times preprocess / inference / postprocess and the whole frame with a
  :class:`~edgeseg.bench.timing.StageTimer`, giving ``stages_ms`` and ``e2e_fps``. On CUDA
  (torch, TensorRT) ``latency_ms`` are CUDA-event times on the stream that does the work; the
  stage loop is host time with a synchronise after every stage.
* **Rounds.** The budget (``duration_s`` or ``iters``) is split into ``rounds`` rounds
  (default 3); each round times every configuration in turn (inference loop, then the staged
  loop), so load from other processes hits all configurations and both loops alike. Samples
  are pooled; with several configurations ``speedup`` is the median over rounds of the
  per-round ratio of mean latencies against the first configuration.
* **Power** comes from :func:`~edgeseg.bench.power.auto_sampler` over the inference windows:
  average W, energy per frame, FPS/W, or ``"n/a (reason)"``. The Jetson power mode and
  jetson_clocks state are stamped, with a warning when clocks are not locked.
* **Cost** needs the architecture, not the weights: the checkpoint's or ``--random-init``
  model, or the variant named in an ONNX / engine's metadata rebuilt untrained. GFLOPs count a
  multiply-add as 2; CIO is HarDNet's sum of conv inputs + outputs (elements), per component
  (:data:`edgeseg.models.summary.COMPONENTS`); DRAM = CIO x bytes/element at the precision +
  the convolutions' weights at the same precision (BatchNorm folds into them on export).
* **Roofline**: the profile's dense peak at the precision and its DRAM bandwidth give
  ``latency_floor_ms = max(gflops / peak, dram_mb / bandwidth)``; where the profile leaves a
  figure null (x86-cpu) it is measured here (the faster of torch's and onnxruntime's fp32
  matmul, :func:`~edgeseg.bench.peaks.fp32_peak`; large-tensor copy bandwidth).
* **Efficiency** = per round, achieved GFLOP/s (``gflops`` / the round's mean latency) / an
  fp32 torch matmul GFLOP/s (:func:`~edgeseg.bench.peaks.matmul_gflops`) measured in this process
  right before that round, with the configuration's threads, on the backend's device; the
  median over rounds. ``efficiency_reference`` holds the per-round matmul rates and 1-minute
  load averages and ``reliable`` (false when the load exceeded the usable cores: then the model
  and its reference both waited for the cores, unevenly). The roofline keeps the better of the
  matmul rates measured before and after all loops.
* **Overhead** of the measurement itself (``overhead_pct``): the timer's cost per sample (an
  empty callable timed through the same loop) relative to the mean latency, plus the CPU time
  the power sampler thread used relative to the window (its share of the machine it competes
  for).

Backends and artifacts: torch runs the checkpoint / random-init model, or the architecture
rebuilt from an ONNX or engine's metadata (untrained: speed does not depend on the weights; a
warning says so). onnxruntime runs the given ONNX, or one exported here from the torch model
(``dcn="native"``, i.e. ONNX DeformConv, which onnxruntime runs faster on CPU than the
portable GridSample graph; no parity check, which `edgeseg export` does). INT8 onnxruntime runs
``onnx_int8`` when given, else a Q/DQ ONNX built here by :mod:`edgeseg.deploy.quantize` from
the fp32 ONNX and :data:`INT8_CALIBRATION_FRAMES` synthetic street scenes, with the
onnxruntime settings `edgeseg calibrate` picks for this CPU (enough for a speed measurement:
the graph and kernels are the same; calibrate on real frames with `edgeseg calibrate` for
accuracy). TensorRT runs the given
engine only.

Layout: this module checks the arguments and runs the configurations (:func:`run_bench`);
:mod:`~edgeseg.bench.configs` parses them, :mod:`~edgeseg.bench.sources` resolves the model and
opens the segmenters, :mod:`~edgeseg.bench.cost` counts cost and roofline,
:mod:`~edgeseg.bench.measure` times the rounds and :mod:`~edgeseg.bench.environment` stamps
versions, machine and threads. Their public names stay importable from here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

# Re-exported: code and tests import these names from edgeseg.bench.report.
from edgeseg.bench.configs import (
    BACKENDS,
    DEFAULT_HW,
    PRECISIONS,
    BenchConfig,
    Step,
    _device_of,
    parse_compare,
    parse_config,
)
from edgeseg.bench.cost import (
    _cost_for,
    _measured_for,
    _needs_measured,
    _result_skeleton,
    _roof_profile,
    measure_dram_gbs,
    model_cost,
    needs_int8_peak,
    roofline_for,
)
from edgeseg.bench.environment import _resolve_profile, machine, versions
from edgeseg.bench.measure import _cuda_sync_and_timer, _measure, _Run, measure_overhead
from edgeseg.bench.sources import (
    INT8_CALIBRATION_FRAMES,
    _Artifacts,
    _open_segmenter,
    _resolve_source,
    _Source,
    synthetic_frame,
)
from edgeseg.errors import EdgesegError
from edgeseg.sizes import hw_from_flags

__all__ = [
    "BACKENDS",
    "INT8_CALIBRATION_FRAMES",
    "PRECISIONS",
    "BenchConfig",
    "machine",
    "measure_dram_gbs",
    "measure_overhead",
    "model_cost",
    "parse_compare",
    "parse_config",
    "roofline_for",
    "run_bench",
    "synthetic_frame",
    "versions",
]

DEFAULT_ROUNDS = 3  # interleaving rounds


def run_bench(
    *,
    weights: str | Path | None = None,
    onnx: str | Path | None = None,
    engine: str | Path | None = None,
    random_init: bool = False,
    model: str | Path | None = None,
    backend: str | None = None,
    profile: Any = None,
    precision: str | None = None,
    height: int | None = None,
    width: int | None = None,
    warmup_s: float | None = None,
    min_warmup: int = 5,
    duration_s: float | None = None,
    iters: int | None = None,
    threads: int | None = None,
    compare: str | Sequence[str] | None = None,
    rounds: int | None = None,
    cost_only: bool = False,
    onnx_int8: str | Path | None = None,
    frame_hw: tuple[int, int] | None = None,
    dcn: str = "native",
    device: str = "auto",
    samples: bool = False,
    reference_s: float = 0.5,
    step: Step | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Benchmark a model; the library entry of `edgeseg bench`.

    Exactly one model (:func:`~edgeseg.artifacts.resolve.resolve_model`): ``model`` (a
    checkpoint, ONNX or engine path, or a variant name with ``random_init``), or the legacy
    ``weights`` (checkpoint) / ``onnx`` / ``engine`` keywords. ``compare`` (``"torch:fp32,onnxruntime:int8@256x512"``)
    measures several configurations; otherwise one: ``backend`` (default: the artifact's own)
    at ``precision``. Timing is split into ``rounds`` interleaved rounds (default 3).

    Defaults: input size = ``height``/``width``, else the ONNX/engine's fixed size, else the
    explicitly given profile's deploy size, else the checkpoint's, else 512x1024. Precision =
    ``precision``, else the ONNX/engine's, else (``cost_only`` with an explicit profile) the
    profile's deploy precision, else fp32. Warm-up and duration from the profile's ``bench``
    section (``iters`` replaces the duration). ``profile``: a name, path or loaded Profile (read once); None = auto-detect.

    Returns a JSON-able dict (see the module docstring); one configuration gives a flat dict
    with ``backend``, ``precision``, ``input_hw``, ``latency_ms``, ``fps``, ``e2e_fps``,
    ``stages_ms``, ``memory``, ``power_w``, ``energy_mj_per_frame``, ``params``, ``gflops``,
    ``cio_elements``, ``dram_mb``, ``roofline``, ``efficiency``, ``versions``, ``threads``,
    ``overhead_pct`` ...; several give ``{"configs": [...], "speedup": {...}, ...}``. With
    ``samples`` each configuration also carries ``samples_ms`` and ``cio_rows`` (for plots).
    ``reference_s``: seconds of each fp32 matmul measurement (before and after the timed
    loops) and of the copy-bandwidth measurement.
    """
    say = step or (lambda _m: None)
    notes: list[str] = []

    def note(msg: str) -> None:
        if msg not in notes:
            notes.append(msg)
        if warn is not None:
            warn(msg)

    # -- arguments that need nothing loaded ---------------------------------------------------
    if backend is not None and backend not in BACKENDS:
        raise EdgesegError(f"--backend: expected one of {', '.join(BACKENDS)}, got '{backend}'")
    if precision is not None and precision not in PRECISIONS:
        raise EdgesegError(f"--precision: expected one of {', '.join(PRECISIONS)}, got '{precision}'")
    if duration_s is not None and iters is not None:
        raise EdgesegError("give --duration-s or --iters, not both")
    if iters is not None and iters < 1:
        raise EdgesegError(f"--iters must be >= 1, got {iters}")
    if duration_s is not None and duration_s <= 0:
        raise EdgesegError(f"--duration-s must be > 0, got {duration_s}")
    if warmup_s is not None and warmup_s < 0:
        raise EdgesegError(f"--warmup-s must be >= 0, got {warmup_s}")
    if threads is not None and threads < 1:
        raise EdgesegError(f"--threads must be >= 1, got {threads}")
    size = hw_from_flags(height, width)
    if size is not None and (height < 32 or width < 32):  # type: ignore[operator]
        raise EdgesegError(f"input size {height}x{width} is too small (at least 32x32)")
    if dcn not in ("native", "portable"):
        raise EdgesegError(f"dcn: expected native or portable, got '{dcn}'")
    if reference_s <= 0:
        raise EdgesegError(f"reference_s must be > 0, got {reference_s}")
    from edgeseg.runtime.devices import parse_device

    torch_device = parse_device(device)  # where torch (and TensorRT) configurations run
    configs_in = parse_compare(compare) if compare else None
    if configs_in is not None and (backend is not None or precision is not None):
        raise EdgesegError("--compare lists backend:precision itself; drop --backend/--precision")
    if onnx_int8 is not None and not Path(onnx_int8).is_file():
        raise EdgesegError(f"--onnx-int8 file not found: {onnx_int8}")
    wanted = [c.backend for c in configs_in] if configs_in else [backend] if backend else []
    if "tensorrt" in wanted and not cost_only:
        from edgeseg.deploy.tensorrt import require_tensorrt

        require_tensorrt()  # MissingDependencyError: one line, before any model loads

    source = _resolve_source(
        model, Path(weights) if weights else None, Path(onnx) if onnx else None,
        Path(engine) if engine else None, random_init, say, cost_only,
    )
    prof = _resolve_profile(profile, note)

    # -- configurations ------------------------------------------------------------------------
    fixed_hw = tuple(source.meta.input_hw) if source.kind in ("onnx", "engine") else None
    if fixed_hw is not None and source.kind == "onnx" and source.meta.extra.get("dynamic"):
        fixed_hw = None
    if size is not None:
        hw: tuple[int, int] = size
    elif fixed_hw is not None:
        hw = (int(fixed_hw[0]), int(fixed_hw[1]))
    elif profile is not None and prof is not None:
        hw = prof.deploy.input_hw
    elif source.kind == "checkpoint":
        hw = tuple(source.meta.input_hw)  # type: ignore[assignment]
    else:
        hw = DEFAULT_HW
    own = {"checkpoint": "torch", "random": "torch", "onnx": "onnxruntime", "engine": "tensorrt"}
    if precision is None:
        if source.kind in ("onnx", "engine"):
            precision = str(source.meta.precision)
        elif cost_only and profile is not None and prof is not None:
            precision = prof.deploy.precision
        else:
            precision = "fp32"
    configs = configs_in or [BenchConfig(backend or own[source.kind], precision)]
    configs = [c if c.height else replace(c, height=hw[0], width=hw[1]) for c in configs]
    n_rounds = rounds or DEFAULT_ROUNDS
    if n_rounds < 1:
        raise EdgesegError(f"rounds must be >= 1, got {n_rounds}")
    if iters is not None:
        n_rounds = max(1, min(n_rounds, iters))

    # -- cost and roofline ---------------------------------------------------------------------
    import torch

    torch_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _bench_configs(
            configs, hw, source, prof, cost_only, threads, onnx_int8, dcn, frame_hw, n_rounds,
            warmup_s, min_warmup, duration_s, iters, samples, reference_s, notes, note, say,
            device=torch_device,
        )
    finally:
        torch.set_num_threads(torch_threads)  # library callers keep their own setting


def _bench_configs(
    configs: list[BenchConfig], hw: tuple[int, int], source: _Source, prof: Any,
    cost_only: bool, threads: int | None, onnx_int8: str | Path | None, dcn: str,
    frame_hw: tuple[int, int] | None, n_rounds: int, warmup_s: float | None, min_warmup: int,
    duration_s: float | None, iters: int | None, samples: bool, reference_s: float,
    notes: list[str], note: Callable[[str], None], say: Step, *, device: Any,
) -> dict[str, Any]:
    from edgeseg.bench.peaks import fp32_peak

    say("counting GFLOPs and CIO")
    costs: dict[Any, Any] = {}
    need_mm, need_bw = _needs_measured(prof, [c.precision for c in configs])
    cuda = device.type == "cuda"
    devices = sorted({_device_of(c, cuda) for c in configs})
    if not cost_only and any(_roof_profile(prof, c, cuda) is None for c in configs):
        need_bw = True  # a CPU configuration beside a GPU profile: this CPU's own roofs
    measured: dict[str, Any] = {"matmul": {}}

    if cost_only:
        if need_mm:
            say("measuring the fp32 matmul rate")
            measured["matmul"] = {d: fp32_peak(seconds=2 * reference_s, device=d)
                                  for d in devices}
        if need_bw:
            say("measuring copy bandwidth")
            measured["dram"] = measure_dram_gbs(seconds=reference_s)
        if needs_int8_peak(prof, configs, cuda, cost_only=True):
            from edgeseg.bench.peaks import int8_matmul_gops

            say("measuring the int8 matmul rate")
            measured["matmul_int8"] = {
                "cpu": int8_matmul_gops(seconds=2 * reference_s, threads=threads)}
        results = []
        for c in configs:
            h, w = c.height or hw[0], c.width or hw[1]
            cost = _cost_for(source, (h, w), costs, samples)
            results.append(_result_skeleton(c, (h, w), source, prof, prof, cost,
                                            _measured_for(measured, c, cuda), cost_only=True))
        return _finish(results, notes, prof, measured, None, samples)

    # -- open every configuration --------------------------------------------------------------
    arts = _Artifacts(source, dcn, Path(onnx_int8) if onnx_int8 else None, threads, say)
    runs: list[_Run] = []
    try:
        for c in configs:
            h, w = c.height or hw[0], c.width or hw[1]
            say(f"opening {c.label}")
            seg = _open_segmenter(c, (h, w), source, arts, threads, note, device)
            fhw = frame_hw or (h, w)
            frame = synthetic_frame(*fhw)
            sync, timer_factory, timer_name = _cuda_sync_and_timer(seg)
            batch = seg.preprocess(frame)
            runs.append(_Run(c, (h, w), seg, frame, batch, sync, timer_factory, timer_name))
        results, speedup = _measure(
            runs, source, prof, costs, measured, need_bw, devices, cuda, n_rounds,
            warmup_s, min_warmup, duration_s, iters, threads, samples, reference_s, note, say,
        )
        return _finish(results, notes, prof, measured, speedup, samples)
    finally:
        arts.close()


def _finish(
    results: list[dict[str, Any]], notes: list[str], prof: Any, measured: dict[str, Any],
    speedup: dict[str, float] | None, samples: bool,
) -> dict[str, Any]:
    if "dram" in measured:
        for r in results:
            r["dram_bandwidth"] = measured["dram"]
    for r in results:
        r["warnings"] = list(notes)
    if len(results) == 1:
        return results[0]
    out: dict[str, Any] = {
        "configs": results,
        "baseline": results[0]["config"],
        "speedup": speedup,
        "profile": prof.name if prof is not None else None,
        "versions": results[0]["versions"],
        "threads": results[0]["threads"],
        "machine": results[0].get("machine"),
        "overhead_pct": max((r["overhead_pct"] or 0.0) for r in results)
        if speedup is not None else None,
        "warnings": list(notes),
    }
    return out


def strip_samples(report: dict[str, Any]) -> dict[str, Any]:
    """A copy of a :func:`run_bench` report without the raw samples and per-layer rows."""
    def strip(r: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in r.items() if k not in ("samples_ms", "cio_rows")}

    if "configs" in report:
        return {**report, "configs": [strip(r) for r in report["configs"]]}
    return strip(report)
