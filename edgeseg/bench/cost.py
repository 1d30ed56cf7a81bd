"""Model cost and roofline: what a frame costs, and the fastest the device could run it.

:func:`model_cost` counts parameters, GFLOPs, CIO and the DRAM estimate on a meta-device twin
of the architecture (see :mod:`edgeseg.bench.report` for the conventions);
:func:`roofline_for` turns a cost into a latency floor from the profile's roofs, or measured ones
(:func:`measure_dram_gbs`, the fp32 matmul rate) where the profile has none. Also the cached
cost of a model source and the cost-and-roofline part of each configuration's result
(:func:`_result_skeleton`).
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from edgeseg.bench.configs import BenchConfig, _device_of
from edgeseg.bench.environment import machine, versions
from edgeseg.bench.sources import _Source
from edgeseg.errors import EdgesegError

__all__ = ["measure_dram_gbs", "model_cost", "roofline_for"]


def _meta_twin(model: Any) -> Any:
    """A copy of ``model`` on the meta device (no memory, no compute) for shape-level counting."""
    from edgeseg.models.desanet import DESANet, build_model

    if isinstance(model, DESANet):
        twin = build_model(model.variant, num_classes=model.num_classes, aux=False)
    else:
        twin = copy.deepcopy(model)
    twin = twin.to("meta").eval()
    if hasattr(twin, "set_dcn_impl"):
        twin.set_dcn_impl("portable")  # torchvision's kernel has no meta implementation
    return twin


def _gflops(model: Any, twin: Any, height: int, width: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from edgeseg.models.desanet import DESANet
    from edgeseg.models.summary import count_gflops

    if isinstance(model, DESANet):
        return count_gflops(model, height, width)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        twin(torch.empty(1, 3, height, width, device="meta"))
    return counter.get_total_flops() / 1e9


def model_cost(
    model: Any, height: int, width: int, precision: str = "fp32", *, rows: bool = False
) -> dict[str, Any]:
    """Parameters, GFLOPs, CIO (total and per component) and the DRAM estimate of one frame.

    Counting runs on a meta-device twin of the architecture, so it takes no memory or compute
    and the weights do not matter.

    Returns:
        ``params`` (inference graph), ``gflops``, ``cio_elements``, ``cio_by_component``
        (``{component: {cio, layers, macs, params}}``), ``conv_params``, ``dram_mb`` (at
        ``precision``), ``dram_mb_by_precision``, ``layers``; with ``rows`` also
        ``cio_rows`` (one per convolution call: name, kind, component, shapes, cio, macs).
    """
    from edgeseg.bench.cio import BYTES_PER_ELEMENT, bytes_per_element, conv_cio
    from edgeseg.models.desanet import DESANet
    from edgeseg.models.summary import component_of

    bytes_per_element(precision)  # validates
    if height < 16 or width < 16:
        raise EdgesegError(f"input size {height}x{width} is too small for the cost count")
    twin = _meta_twin(model)
    report = conv_cio(twin, (1, 3, height, width))
    if isinstance(model, DESANet):  # paper components instead of the first name segment
        # COMPONENTS holds parameter-name prefixes ("classifier."): a module name plus "." is one
        report.rows = [replace(r, component=component_of(r.name + ".")) for r in report.rows]
    if hasattr(model, "inference_parameters"):
        params = int(model.inference_parameters())
    else:
        params = sum(p.numel() for p in model.parameters())
    comps = {
        k: {"cio": v["cio"], "layers": v["layers"], "macs": v["macs"], "params": v["params"]}
        for k, v in report.components.items()
    }
    out: dict[str, Any] = {
        "model": getattr(model, "variant", type(model).__name__),
        "input_hw": [height, width],
        "precision": precision,
        "params": params,
        "gflops": _gflops(model, twin, height, width),
        "cio_elements": report.cio,
        "cio_by_component": comps,
        "conv_params": report.params,
        "dram_mb": report.dram_mb(precision),
        "dram_mb_by_precision": {p: report.dram_mb(p) for p in BYTES_PER_ELEMENT},
        "layers": len(report.rows),
    }
    if rows:
        out["cio_rows"] = [
            {
                "name": r.name,
                "kind": r.kind,
                "component": r.component,
                "in_shape": list(r.in_shape),
                "out_shape": list(r.out_shape),
                "cio": r.cio,
                "macs": r.macs,
            }
            for r in report.rows
        ]
    return out


def measure_dram_gbs(mb: int = 128, seconds: float = 0.5) -> dict[str, Any]:
    """Copy bandwidth of this machine: ``dst.copy_(src)`` of ``mb`` MB tensors (torch threads).

    Counts 2 x size per copy (read + write; write-allocate traffic is not added), median rate
    over the calls in ``seconds``. A stand-in for the DRAM roof where the profile has none.
    """
    import torch

    n = mb * 1_000_000 // 4
    src = torch.ones(n, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)  # first touch
    rates: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(rates) < 3 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        dst.copy_(src)
        rates.append(2 * n * 4 / (time.perf_counter() - t0) / 1e9)
    return {
        "gbs": statistics.median(rates),
        "method": f"torch copy of {mb} MB, 2 x bytes per copy, median of {len(rates)}",
        "threads": torch.get_num_threads(),
    }


def _profile_peak(profile: Any, precision: str) -> float | None:
    if profile is None:
        return None
    return profile.device.peak_tflops.get(precision)


def roofline_for(
    cost: dict[str, Any],
    profile: Any,
    precision: str,
    *,
    measured: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Latency floor and FPS ceiling of ``cost`` at ``precision`` on the profile's device.

    ``measured`` supplies ``{"matmul": matmul_gflops(...), "dram": measure_dram_gbs()}`` for
    figures the profile leaves null (and for no profile at all); the result names where each
    roof came from.
    """
    from edgeseg.bench.cio import bytes_per_element
    from edgeseg.bench.roofline import roofline

    bytes_per_element(precision)
    peak = _profile_peak(profile, precision)
    bw = profile.device.dram_gbs if profile is not None else None
    where = f"profile {profile.name}" if profile is not None else "no profile"
    # A ceiling must bound every measurement, so a precision's compute roof is its own peak:
    # the profile's, else one measured here at that precision (fp32 torch matmul, int8
    # onnxruntime MatMulInteger); never the fp32 rate standing in for int8 or fp16.
    mm = (measured or {}).get("matmul" if precision == "fp32" else f"matmul_{precision}")
    if peak is not None:
        peak_source = f"{where}: device.peak_tflops.{precision}"
    elif mm is not None:
        peak = mm["gflops"] / 1000.0
        peak_source = (
            f"measured {mm['dtype']} matmul ({mm['backend']} on {mm['device']}, "
            f"{mm.get('threads') or '?'} threads)"
        )
        if precision != "fp32" and profile is not None:
            peak_source += f"; no {precision} peak in {where}"
    elif precision == "fp32":
        raise EdgesegError(f"{where} has no {precision} peak and none was measured")
    else:
        peak_source = (f"no {precision} peak known ({where}) and none measured at {precision}: "
                       "no ceiling")
    if bw is not None:
        bw_source = f"{where}: device.dram_gbs"
    else:
        if not measured or "dram" not in measured:
            raise EdgesegError(f"{where} has no DRAM bandwidth and none was measured")
        bw = measured["dram"]["gbs"]
        bw_source = "measured " + measured["dram"]["method"]
    dram_mb = cost["dram_mb_by_precision"][precision] if "dram_mb_by_precision" in cost else cost["dram_mb"]
    if peak is not None:
        r = roofline(cost["gflops"], dram_mb, peak, bw)
    else:
        r = no_ceiling(dram_mb / bw)
    r.update(
        device=profile.device.name if profile is not None else "this machine",
        precision=precision,
        gflops=cost["gflops"],
        dram_mb=dram_mb,
        peak_tflops=peak,
        dram_gbs=bw,
        peak_source=peak_source,
        bw_source=bw_source,
    )
    return r


def no_ceiling(memory_ms: float | None = None) -> dict[str, Any]:
    """The roofline fields when no compute peak bounds this precision (or a measured run beat
    the one derived from a measured peak): no floor, no ceiling."""
    return {
        "compute_ms": None, "memory_ms": memory_ms, "latency_floor_ms": None,
        "fps_ceiling": None, "bound": None, "arithmetic_intensity": None, "ridge_point": None,
        "attainable_tflops": None,
    }


def with_measurement(roof: dict[str, Any], fps: float) -> dict[str, Any]:
    """Add a measured FPS to a :func:`roofline_for` result (in place): ``measured_fps`` and
    ``fraction_of_ceiling``. A run faster than the ceiling proves the ceiling wrong (a measured
    matmul rate is only a lower bound of the peak; a per-frame DRAM estimate ignores caches):
    it is dropped (``fps_ceiling`` None, the number kept as ``rejected_fps_ceiling``, a
    ``note`` names the roof that failed), so no reported ceiling is below a measurement."""
    roof["measured_fps"] = fps
    ceiling = roof.get("fps_ceiling")
    roof["fraction_of_ceiling"] = fps / ceiling if ceiling else None
    if not ceiling or fps <= ceiling:
        return roof
    bound = roof.get("bound")
    source = roof.get("peak_source") if bound == "compute" else roof.get("bw_source")
    roof.update(no_ceiling(roof.get("memory_ms")), fraction_of_ceiling=None,
                rejected_fps_ceiling=ceiling)
    roof["note"] = (f"measured {fps:.1f} FPS above the {ceiling:.1f} FPS {bound}-bound ceiling "
                    f"({source}): that roof is too low, so no ceiling is reported")
    return roof


def needs_int8_peak(
    profile: Any, configs: Sequence[BenchConfig], cuda: bool, *, cost_only: bool = False
) -> bool:
    """Whether an INT8 configuration's roofline lacks a profile INT8 peak: timed, one that
    computes on this CPU; cost-only, any (the profile's device is the one predicted)."""
    if cost_only:
        return any(c.precision == "int8" for c in configs) and _profile_peak(
            profile, "int8") is None
    return any(
        c.precision == "int8" and _device_of(c, cuda) == "cpu"
        and _profile_peak(_roof_profile(profile, c, cuda), "int8") is None
        for c in configs
    )


def _needs_measured(profile: Any, precisions: Sequence[str]) -> tuple[bool, bool]:
    """(matmul needed, bandwidth needed) for the roofline at these precisions."""
    peaks = any(_profile_peak(profile, p) is None for p in precisions)
    bw = profile is None or profile.device.dram_gbs is None
    return peaks, bw


def _measured_for(measured: dict[str, Any], c: BenchConfig, cuda: bool) -> dict[str, Any]:
    """The measured roofs that apply to one configuration (its device's matmul)."""
    out = {k: v for k, v in measured.items() if not k.startswith("matmul")}
    for key in ("matmul", "matmul_int8"):
        mm = measured.get(key, {}).get(_device_of(c, cuda))
        if mm is not None:
            out[key] = mm
    return out


def _roof_profile(prof: Any, c: BenchConfig, cuda: bool) -> Any:
    """The profile whose roofs apply to a measured configuration: None (this machine's
    measured CPU roofs) for a CPU run beside a GPU or Jetson profile."""
    if prof is not None and prof.device.kind != "cpu" and _device_of(c, cuda) == "cpu":
        return None
    return prof


def _cost_for(
    source: _Source, hw: tuple[int, int], cache: dict[Any, Any], rows: bool
) -> dict[str, Any]:
    if hw not in cache:
        net = source.model if source.model is not None else _arch(source)
        cache[hw] = model_cost(net, hw[0], hw[1], rows=rows)
    return cache[hw]


def _arch(source: _Source) -> Any:
    """The architecture for counting (cheap: no weights are loaded for an ONNX or engine)."""
    from edgeseg.models.desanet import build_model

    return build_model(source.variant, num_classes=len(source.meta.classes), aux=False)


def _result_skeleton(
    c: BenchConfig, hw: tuple[int, int], source: _Source, prof: Any, roof_prof: Any,
    cost: dict[str, Any], measured: dict[str, Any], *, cost_only: bool,
) -> dict[str, Any]:
    """One configuration's result: cost, roofline and environment filled, the timing fields
    None (cost-only; :func:`~edgeseg.bench.measure._fill_timing` fills them)."""
    roof = roofline_for(cost, roof_prof, c.precision, measured=measured)
    res: dict[str, Any] = {
        "config": c.label,
        "backend": c.backend,
        "precision": c.precision,
        "input_hw": list(hw),
        "model": {"variant": source.variant, "source": source.description},
        "profile": prof.name if prof is not None else None,
        "cost_only": cost_only,
        "latency_ms": None,
        "fps": None,
        "e2e_fps": None,
        "stages_ms": None,
        "memory": None,
        "power_w": None,
        "energy_mj_per_frame": None,
        "fps_per_watt": None,
        "params": cost["params"],
        "gflops": cost["gflops"],
        "cio_elements": cost["cio_elements"],
        "cio_by_component": cost["cio_by_component"],
        "dram_mb": cost["dram_mb_by_precision"][c.precision],
        "dram_mb_by_precision": cost["dram_mb_by_precision"],
        "conv_params": cost["conv_params"],
        "roofline": roof,
        "efficiency": None,
        "versions": versions(),
        "threads": None,
        "overhead_pct": None,
    }
    if "cio_rows" in cost:
        res["cio_rows"] = cost["cio_rows"]
    if cost_only:
        res["machine"] = machine()
    return res
