"""INT8 (Q/DQ, onnxruntime CPU) vs FP32: throughput and argmax agreement for both DESANet
variants, and which quantization choices make INT8 fast on this CPU.

    python benchmarks/int8.py [--height 512 --width 1024 --calib 32 --val 8 --runs 6 --rounds 3]
                              [--weights-hn CKPT] [--weights-rn CKPT] [--no-write]

Weights: random-init (seed 0, with small random deformable-conv offsets so the deformable conv
really samples off-grid) unless ``--weights-hn/--weights-rn`` give checkpoints. Speed does not
depend on the weights; agreement does: a random-init net has small logit margins, so its
argmax flips more easily than a trained net's, and its agreement is a pessimistic proxy. The
acceptance figure (>= 0.98 agreement, <= 1 mIoU point) is checked on a trained model by
tests/test_quantize.py::test_acceptance_trained_model.

Calibration frames and held-out frames are synthetic street scenes (edgeseg.data.synthetic)
at the model size, calibrated with ``edgeseg.deploy.quantize`` (percentile, the CLI default).

Variants (all per-channel int8 weights unless named; sessions use the runtime backend's
options, ``ORT_ENABLE_ALL``, physical cores):

* ``default``: what `edgeseg calibrate` writes for an onnxruntime profile on a VNNI CPU:
  uint8 activations; DeformConv and the logits head (classifier conv + final upsampling) kept
  float.
* ``entropy``, ``minmax``: the default with another calibration method.
* ``quantize-logits``: the logits head in int8 too. ``float-resize``: every Resize kept float
  instead of the logits head.
* ``per-tensor``: per-tensor weights. ``reduce-range``: 7-bit weights (non-VNNI advice).
* ``s8s8``: symmetric int8 activations, the TensorRT format, run on the CPU.
* ``preprocessed``: ``quant_pre_process`` (symbolic shapes + onnxruntime optimisation) before
  calibration.
* ``basic-opt``: the default model with ``ORT_ENABLE_BASIC`` (no Q/DQ -> QLinearConv fusion).

Timing: inferences of all variants are interleaved one by one (so load from other processes
hits all alike), ``--runs`` per variant per round; each round gives a median per variant and a
speedup against FP32 of the same round; the reported figures are medians over ``--rounds``.
Results go to a table on stdout and to docs/benchmarks.md between ``<!-- int8:start -->`` and
``<!-- int8:end -->``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import DOC, write_section

SPEED_TARGET, AGREEMENT_TARGET = 1.8, 0.98
VARIANTS = ("default", "entropy", "minmax", "quantize-logits", "float-resize", "per-tensor",
            "reduce-range", "s8s8", "preprocessed", "basic-opt")


def cpu_line(threads: int) -> str:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    import onnxruntime

    load = f"; load average at start {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (f"{model}, {os.cpu_count()} logical cores, {threads} onnxruntime threads; "
            f"ISA: {', '.join(isa) or 'none of avx2/avx512/vnni'}"
            f"{'' if {'avx512_vnni', 'avx_vnni'} & flags else ' (no VNNI)'}; "
            f"onnxruntime {onnxruntime.__version__}; Python {platform.python_version()}{load}")


def random_model(variant: str) -> Any:
    import torch

    from edgeseg.models.desanet import build_model

    torch.manual_seed(0)
    model = build_model(variant, aux=False).eval()
    offset = model.spatial_path.deform.offset
    with torch.no_grad():
        offset.weight.normal_(0.0, 0.01)
        offset.bias.normal_(0.0, 1.0)
    return model


def describe_checkpoint(path: Path) -> str:
    """``trained checkpoint x.pt: 1500 iterations, batch 8, 128x256 crops`` (what it knows)."""
    from edgeseg.artifacts.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    cfg = ckpt.get("config") or {}
    parts = [f"{ckpt['iteration']} iterations" if "iteration" in ckpt else None,
             f"batch {cfg['batch']}" if "batch" in cfg else None,
             "x".join(str(v) for v in cfg["crop"]) + " crops" if cfg.get("crop") else None,
             f"{cfg.get('optimizer', 'sgd')} lr {cfg['lr']:g}" if "lr" in cfg else None]
    known = ", ".join(p for p in parts if p)
    return f"trained checkpoint {path.name}" + (f": {known}" if known else "")


def session(path: Path, threads: int, level: str = "ORT_ENABLE_ALL") -> Any:
    import onnxruntime as ort

    from edgeseg.runtime.onnxruntime_backend import session_options

    so, _ = session_options(threads)
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def bench_model(variant: str, args: argparse.Namespace, data: Path, work: Path) -> dict[str, Any]:
    import onnx

    from edgeseg.artifacts.checkpoint import default_meta, load_model
    from edgeseg.deploy import quantize as q
    from edgeseg.deploy.onnx import export_onnx
    from edgeseg.runtime import open_segmenter

    hw = (args.height, args.width)
    weights = getattr(args, f"weights_{variant.split('-')[1]}")
    if weights:
        model, meta = load_model(weights)
        origin = describe_checkpoint(Path(weights))
    else:
        model, meta = random_model(variant), default_meta(variant, hw)
        origin = "random-init"
    fp32 = work / f"{variant}.fp32.onnx"
    log(f"{variant}: exporting at {hw[0]}x{hw[1]} (native DCN)")
    export_onnx(model, meta, fp32, height=hw[0], width=hw[1], dcn="native", parity=False)
    del model
    proto, meta = q.check_fp32_onnx(fp32)
    seg = open_segmenter(fp32, threads=args.threads)
    cal = sorted((data / "leftImg8bit" / "train").glob("*/*.png"))[: args.calib]
    val = sorted((data / "leftImg8bit" / "val").glob("*/*.png"))[: args.val]
    xs = [seg.preprocess(q.read_bgr(p)) for p in val]

    def ranges_for(model_path: Path, settings: q.QuantSettings, tag: str) -> tuple[Any, float]:
        log(f"{variant}: calibrating {tag} on {len(cal)} frames ({settings.method})")
        s = open_segmenter(model_path, threads=args.threads)
        t0 = time.perf_counter()
        r = q.compute_ranges(model_path, q.CalibrationReader(cal, s, s.input_name), settings,
                             work)
        return r, time.perf_counter() - t0

    base = q.QuantSettings("onnxruntime", "percentile", "uint8", "int8", per_channel=True,
                           reduce_range=False, exclude=q.DEFAULT_EXCLUDE)
    asym, calib_s = ranges_for(fp32, base, "asymmetric")
    wanted = [v for v in VARIANTS if v in args.variants]
    settings = {
        "default": base,
        "entropy": replace(base, method="entropy"),
        "minmax": replace(base, method="minmax"),
        "quantize-logits": replace(base, exclude=("DeformConv", "GridSample")),
        "float-resize": replace(base, exclude=("DeformConv", "GridSample", "Resize")),
        "per-tensor": replace(base, per_channel=False),
        "reduce-range": replace(base, reduce_range=True),
        "s8s8": q.QuantSettings.for_target("tensorrt", "percentile"),
    }
    models: dict[str, tuple[Path, str]] = {"fp32": (fp32, "ORT_ENABLE_ALL")}
    for name in wanted:
        if name in ("basic-opt", "preprocessed"):
            continue
        s = settings[name]
        if s.symmetric_activations or s.method != base.method:
            r = ranges_for(fp32, s, f"{s.method}, {s.activation_type} activations")[0]
        else:
            r = asym
        out = work / f"{variant}.{name}.onnx"
        log(f"{variant}: quantizing {name}")
        q.quantize_qdq(fp32, out, r, s, q.excluded_nodes(proto, s.exclude), work)
        models[name] = (out, "ORT_ENABLE_ALL")
    if "preprocessed" in wanted:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        pre = work / f"{variant}.pre.onnx"
        with q.quiet_ort():
            quant_pre_process(str(fp32), str(pre))
        r, _ = ranges_for(pre, base, "pre-processed")
        out = work / f"{variant}.preprocessed.onnx"
        q.quantize_qdq(pre, out, r, base, q.excluded_nodes(onnx.load(str(pre)), base.exclude),
                       work)
        models["preprocessed"] = (out, "ORT_ENABLE_ALL")
    if "basic-opt" in wanted and "default" in models:
        models["basic-opt"] = (models["default"][0], "ORT_ENABLE_BASIC")

    sessions = {k: session(p, args.threads, lvl) for k, (p, lvl) in models.items()}
    name_in = sessions["fp32"].get_inputs()[0].name
    outs = {k: [s.run(None, {name_in: x})[0] for x in xs] for k, s in sessions.items()}
    ref = [o.argmax(1) for o in outs["fp32"]]
    agreement = {k: float(np.mean([(o.argmax(1) == r).mean() for o, r in zip(v, ref)]))
                 for k, v in outs.items()}
    log(f"{variant}: timing {len(sessions)} models, {args.rounds} rounds x {args.runs} runs")
    x = xs[0]
    rounds: list[dict[str, float]] = []
    keys = list(sessions)
    for rnd in range(args.rounds):
        times: dict[str, list[float]] = {k: [] for k in keys}
        for i in range(args.runs):
            order = keys[(i + rnd) % len(keys):] + keys[: (i + rnd) % len(keys)]
            for k in order:
                t0 = time.perf_counter()
                sessions[k].run(None, {name_in: x})
                times[k].append(time.perf_counter() - t0)
        rounds.append({k: statistics.median(v) * 1e3 for k, v in times.items()})
    result = {}
    for k in keys:
        lat = [r[k] for r in rounds]
        speed = [r["fp32"] / r[k] for r in rounds]
        result[k] = {"latency_ms": statistics.median(lat), "speedup": statistics.median(speed),
                     "speedup_range": (min(speed), max(speed)), "agreement": agreement[k],
                     "bytes": models[k][0].stat().st_size}
    return {"variant": variant, "origin": origin, "results": result,
            "calib_s_per_frame": calib_s / max(1, len(cal)), "calib_frames": len(cal),
            "val_frames": len(val)}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def report(runs: list[dict[str, Any]], args: argparse.Namespace, machine: str) -> str:
    extra = "".join(f" --weights-{v} {Path(w).name}" for v in ("hn", "rn")
                    if (w := getattr(args, f"weights_{v}")))
    if list(args.variants) != list(VARIANTS):
        extra += f" --variants {','.join(args.variants)}"
    how = (
        f"`python benchmarks/int8.py --height {args.height} --width {args.width} --calib "
        f"{args.calib} --val {args.val} --runs {args.runs} --rounds {args.rounds}{extra}`: both "
        f"variants exported at {args.height}x{args.width} (native DeformConv), calibrated with "
        "percentile on "
        f"{args.calib} synthetic street scenes, agreement = fraction of pixels whose argmax "
        f"matches FP32 on {args.val} other synthetic scenes. Latency: onnxruntime CPU, the "
        "runtime backend's session options, batch 1, inferences of all variants interleaved; "
        f"median per round of {args.runs} runs, then median (and range) over {args.rounds} "
        "rounds of the per-round speedup."
    )
    size = f"{args.height}x{args.width}"
    lines = [f"## INT8 (Q/DQ) vs FP32 on the CPU at {size}: `edgeseg calibrate`", "",
             f"Machine: {machine}.", "", how, ""]
    for run in runs:
        lines += [f"### {run['variant']} ({run['origin']}) at {size}", "",
                  "| variant | latency | FPS | speedup vs FP32 | agreement | file |",
                  "|---|---|---|---|---|---|"]
        for k, r in run["results"].items():
            lo, hi = r["speedup_range"]
            lines.append(
                f"| {k} | {r['latency_ms']:.0f} ms | {1000 / r['latency_ms']:.2f} | "
                f"{r['speedup']:.2f}x ({lo:.2f}-{hi:.2f}) | {r['agreement']:.4f} | "
                f"{r['bytes'] / 2**20:.1f} MiB |")
        d = run["results"].get("default")
        if d:
            speed_ok = d["speedup"] >= SPEED_TARGET
            agree_ok = d["agreement"] >= AGREEMENT_TARGET
            note = ", random-init weights: not the acceptance figure" \
                if run["origin"] == "random-init" else ""
            verdict = (
                f"Target INT8 >= {SPEED_TARGET}x FP32 at >= {AGREEMENT_TARGET} agreement: speed "
                f"{'PASS' if speed_ok else 'FAIL'} ({d['speedup']:.2f}x), agreement "
                f"{'PASS' if agree_ok else 'FAIL'} ({d['agreement']:.4f}{note}). Calibration "
                f"cost: {run['calib_s_per_frame']:.2f} s per frame (percentile, "
                f"{run['calib_frames']} frames)."
            )
            lines += ["", verdict]
        lines.append("")
    lines += findings(runs, size)
    return "\n".join(lines)


def findings(runs: list[dict[str, Any]], size: str) -> list[str]:
    """What the variants show, in numbers (model by model, 'HN / RN'); ``size`` keeps the
    heading unique in docs/benchmarks.md, which holds one such section per input size."""

    def col(key: str, field: str = "speedup", fmt: str = "{:.2f}x") -> str | None:
        vals = [r["results"][key][field] for r in runs if key in r["results"]]
        return " / ".join(fmt.format(v) for v in vals) if len(vals) == len(runs) else None

    names = " / ".join(r["variant"].split("-")[1].upper() for r in runs)
    out = [f"### What makes INT8 fast at {size}", "",
           f"Figures are {names}; speedups against FP32 in the same rounds."]
    rows = [
        ("default", ("**uint8 activations, int8 per-channel weights** (what `calibrate` writes "
                     "for an onnxruntime profile): {s}, agreement {a}.")),
        ("s8s8", ("**Symmetric int8 activations** (the TensorRT format) on this CPU: {s}, "
                  "agreement {a}. onnxruntime's x86 int8 convolutions are built around "
                  "uint8 x int8 products (VNNI's `vpdpbusd` multiplies unsigned by signed "
                  "bytes), so `calibrate` picks the format from the profile's backend.")),
        ("basic-opt", ("**Graph optimisation**: the default INT8 model with "
                       "`ORT_ENABLE_BASIC`: {s}. Q/DQ -> QLinearConv fusion happens at the "
                       "extended level; the runtime backend uses `ORT_ENABLE_ALL`.")),
        ("per-tensor", "**Per-tensor weights** instead of per-channel: {s}, agreement {a}."),
        ("reduce-range", ("**reduce_range** (7-bit weights, the advice for CPUs without "
                          "VNNI): {s}, agreement {a}; `calibrate` sets it only without VNNI.")),
        ("preprocessed", ("**quant_pre_process** (symbolic shapes + onnxruntime "
                          "optimisation) before calibration: {s}, agreement {a}. `calibrate` "
                          "skips it, so the Q/DQ model keeps the FP32 ONNX's tensor names, "
                          "which the TensorRT cache needs.")),
        ("entropy", ("**Entropy calibration** (KL, TensorRT's classic) instead of "
                     "percentile: {s}, agreement {a}.")),
        ("minmax", "**Min-max calibration**: {s}, agreement {a}."),
        ("quantize-logits", ("**Logits head in int8 too** (classifier conv and final "
                             "upsampling): {s}, agreement {a}.")),
        ("float-resize", ("**Every Resize float** instead of the logits head: {s}, "
                          "agreement {a}.")),
    ]
    for key, text in rows:
        s, a = col(key), col(key, "agreement", "{:.4f}")
        if s is not None:
            out.append(f"- {text.format(s=s, a=a)}")
    out.append("")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--calib", type=int, default=32, help="calibration frames")
    ap.add_argument("--val", type=int, default=8, help="held-out frames for agreement")
    ap.add_argument("--runs", type=int, default=6, help="timed runs per variant per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="default: physical cores")
    ap.add_argument("--models", default="desanet-hn,desanet-rn")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--weights-hn", default=None, help="trained DESANet-HN checkpoint")
    ap.add_argument("--weights-rn", default=None, help="trained DESANet-RN checkpoint")
    ap.add_argument("--images", type=Path, default=None,
                    help="Cityscapes-layout root to use instead of synthetic scenes")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args()
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]

    from edgeseg.data.synthetic import write_synthetic_cityscapes
    from edgeseg.runtime.onnxruntime_backend import physical_cores

    args.threads = args.threads or physical_cores()
    machine = cpu_line(args.threads)
    with tempfile.TemporaryDirectory(prefix="edgeseg-int8-bench-") as tmp:
        work = Path(tmp)
        data = args.images
        if data is None:
            data = work / "scenes"
            log(f"writing {args.calib} + {args.val} synthetic scenes at {args.height}x{args.width}")
            write_synthetic_cityscapes(data, train=args.calib, val=args.val, height=args.height,
                                       width=args.width, seed=0, color=False)
        runs = [bench_model(v.strip(), args, data, work) for v in args.models.split(",")]
    text = report(runs, args, machine)
    print(text)
    if not args.no_write:
        # 512x1024 is "int8"; other sizes get their own section beside it
        size = (args.height, args.width)
        name = "int8" if size == (512, 1024) else f"int8_{size[0]}x{size[1]}"
        write_section(name, text)
        log(f"wrote the {name} section of {DOC}")


if __name__ == "__main__":
    main()
