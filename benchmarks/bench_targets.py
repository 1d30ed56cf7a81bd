"""`edgeseg bench` speed targets on this machine's CPU, and where onnxruntime spends its time.

    python benchmarks/bench_targets.py [--height 512 --width 1024] [--rounds 5]
                                       [--sections options,targets,profile,overhead]

Sections (all by default), each on random-init DESANet-HN and -RN (speed does not depend on
the weights):

* ``options``: export and session options side by side: torch eager (2 and 1 threads) and
  onnxruntime with the ONNX DeformConv (``native``) or the GridSample graph (``portable``),
  graph optimisation level (basic / extended / all), intra-op threads (2 / 1), CPU memory
  arena on / off. One process per variant; rounds interleave every configuration and an fp32
  matmul (same threads), and the medians of per-round figures are reported.
* ``targets``: the bench tool itself, ``run_bench(compare="torch:fp32,onnxruntime:fp32")`` at
  the default and at 1 thread: onnxruntime / torch speedup (target >= 1.5) and hardware
  efficiency of onnxruntime (achieved GFLOP/s / fp32 matmul GFLOP/s; targets >= 1.0 RN,
  >= 0.7 HN).
* ``profile``: onnxruntime's own profiler (``SessionOptions.enable_profiling``) on the default
  session: time per op type and the slowest nodes.
* ``overhead``: the bench's measurement cost: an empty callable through the timed loop and the
  stage timer, and inference with a power sampler thread on vs off (a stand-in sampler that
  reads /proc/stat, as RAPL reads sysfs, since this machine has no power sensor), interleaved.

Results: a rich table per section on stderr, ``--json`` on stdout, and the
``<!-- bench_targets:start -->`` section of docs/benchmarks.md (``--no-write`` to skip).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import DOC, machine_line, write_section  # noqa: E402

VARIANTS = ("desanet-hn", "desanet-rn")
TARGET_SPEEDUP = 1.5
TARGET_EFFICIENCY = {"desanet-rn": 1.0, "desanet-hn": 0.7}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def export(variant: str, hw: tuple[int, int], dcn: str, out: Path) -> Path:
    from edgeseg.artifacts.checkpoint import default_meta
    from edgeseg.deploy.onnx import export_onnx
    from edgeseg.models.desanet import build_model

    if not out.exists():
        log(f"exporting {out.name}")
        model = build_model(variant, aux=False).eval()
        export_onnx(model, default_meta(variant, hw), out, height=hw[0], width=hw[1], dcn=dcn,
                    parity=False)
    return out


# ------------------------------------------------------------------------------------ options


def session(path: Path, level: str = "all", threads: int = 2, arena: bool = True) -> Any:
    import onnxruntime as ort

    from edgeseg.runtime.onnxruntime_backend import session_options

    so, _ = session_options(threads)
    so.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    so.enable_cpu_mem_arena = arena
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def options_worker(variant: str, hw: tuple[int, int], rounds: int, calls: int,
                   workdir: Path) -> dict[str, Any]:
    """One variant, all configurations, interleaved rounds (runs in its own process)."""
    import torch

    from edgeseg.bench.peaks import matmul_gflops
    from edgeseg.models.desanet import build_model
    from edgeseg.models.summary import count_gflops

    x = np.random.default_rng(0).standard_normal((1, 3, *hw)).astype(np.float32)
    xt = torch.from_numpy(x)
    model = build_model(variant, aux=False).eval()
    gflops = count_gflops(model, *hw)
    native = export(variant, hw, "native", workdir / f"{variant}-native.onnx")
    portable = export(variant, hw, "portable", workdir / f"{variant}-portable.onnx")

    def torch_fn(threads: int) -> Any:
        def fn() -> Any:
            torch.set_num_threads(threads)
            with torch.inference_mode():
                return model(xt)
        return fn

    def ort_fn(s: Any) -> Any:
        return lambda: s.run(None, {"input": x})

    configs: dict[str, tuple[Any, int]] = {
        "torch eager, 2 threads": (torch_fn(2), 2),
        "torch eager, 1 thread": (torch_fn(1), 1),
        "ort native DCN, all, 2 thr, arena (default)": (ort_fn(session(native)), 2),
        "ort native DCN, all, 1 thread": (ort_fn(session(native, threads=1)), 1),
        "ort portable DCN, all, 2 thr": (ort_fn(session(portable)), 2),
        "ort native DCN, extended": (ort_fn(session(native, level="extended")), 2),
        "ort native DCN, basic": (ort_fn(session(native, level="basic")), 2),
        "ort native DCN, no arena": (ort_fn(session(native, arena=False)), 2),
    }
    for name, (fn, _) in configs.items():  # warm-up: first runs allocate and pick kernels
        log(f"{variant}: warming {name}")
        fn()
        fn()
    ms: dict[str, list[float]] = {k: [] for k in configs}
    mm: dict[int, list[float]] = {1: [], 2: []}
    for r in range(rounds):
        for threads in (2, 1):
            torch.set_num_threads(threads)
            mm[threads].append(matmul_gflops(seconds=0.4)["gflops"])
        for name, (fn, _) in configs.items():
            t = []
            for _ in range(calls):
                t0 = time.perf_counter()
                fn()
                t.append((time.perf_counter() - t0) * 1000)
            ms[name].append(statistics.fmean(t))
        log(f"{variant} round {r + 1}/{rounds}: " + ", ".join(
            f"{k.split(',')[0]}={v[-1]:.0f}" for k, v in ms.items()))
    torch.set_num_threads(2)
    base = ms["torch eager, 2 threads"]
    base1 = ms["torch eager, 1 thread"]
    out: dict[str, Any] = {"variant": variant, "gflops": gflops, "input_hw": list(hw),
                           "rounds": rounds, "calls_per_round": calls,
                           "matmul_gflops": {str(k): statistics.median(v) for k, v in mm.items()},
                           "configs": {}}
    for name, (_, threads) in configs.items():
        per_round_eff = [gflops / (m / 1000) / g for m, g in zip(ms[name], mm[threads])]
        ref = base if threads == 2 else base1
        out["configs"][name] = {
            "threads": threads,
            "median_ms": statistics.median(ms[name]),
            "round_ms": ms[name],
            "vs_torch_same_threads": statistics.median(b / m for b, m in zip(ref, ms[name])),
            "vs_torch_2_threads": statistics.median(b / m for b, m in zip(base, ms[name])),
            "efficiency": statistics.median(per_round_eff),
        }
    return out


def run_options(hw: tuple[int, int], rounds: int, calls: int, workdir: Path) -> list[dict]:
    results = []
    for v in VARIANTS:  # one process per variant: memory of the other is given back
        cmd = [sys.executable, __file__, "--worker-options", v, "--height", str(hw[0]),
               "--width", str(hw[1]), "--rounds", str(rounds), "--calls", str(calls),
               "--workdir", str(workdir)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, text=True)
        results.append(json.loads(proc.stdout))
    return results


# ------------------------------------------------------------------------------------ targets


def run_targets(hw: tuple[int, int], iters: int, rounds: int) -> list[dict[str, Any]]:
    from edgeseg.bench.report import run_bench

    out = []
    for threads in (None, 1):
        for v in VARIANTS:
            log(f"run_bench {v} torch:fp32 vs onnxruntime:fp32, threads {threads or 'default'}")
            r = run_bench(random_init=True, model=v, height=hw[0], width=hw[1], iters=iters,
                          rounds=rounds, warmup_s=0.0, min_warmup=1, threads=threads,
                          compare="torch:fp32,onnxruntime:fp32", step=log)
            t, o = r["configs"]
            out.append({
                "variant": v,
                "threads": threads or "default",
                "torch_ms": t["latency_ms"]["mean"],
                "onnxruntime_ms": o["latency_ms"]["mean"],
                "speedup": r["speedup"][o["config"]],
                "efficiency_onnxruntime": o["efficiency"],
                "efficiency_torch": t["efficiency"],
                "matmul_gflops": o["matmul_gflops"],
                "matmul_runs": o["matmul"]["runs_gflops"],
                "gflops": o["gflops"],
                "e2e_fps_onnxruntime": o["e2e_fps"],
                "fps_onnxruntime": o["fps"],
                "overhead_pct": max(t["overhead_pct"], o["overhead_pct"]),
                "threads_used": o["threads"],
                "reference": o["efficiency_reference"],
            })
    return out


# ------------------------------------------------------------------------------------ profile


def _verdict(ok: bool, reference: dict[str, Any]) -> str:
    verdict = "PASS" if ok else "FAIL"
    return verdict if reference["reliable"] else f"{verdict} (UNRELIABLE)"


def run_profile(hw: tuple[int, int], runs: int, workdir: Path) -> list[dict[str, Any]]:
    import onnxruntime as ort

    from edgeseg.runtime.onnxruntime_backend import session_options

    out = []
    for v in VARIANTS:
        path = export(v, hw, "native", workdir / f"{v}-native.onnx")
        so, _ = session_options()
        so.enable_profiling = True
        so.profile_file_prefix = str(workdir / f"ort-profile-{v}")
        s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((1, 3, *hw)).astype(np.float32)
        for _ in range(runs + 1):
            s.run(None, {"input": x})
        events = json.loads(Path(s.end_profiling()).read_text())
        model_runs = sorted(
            (e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"),
            key=lambda e: e["ts"])
        first_end = model_runs[0]["ts"] + model_runs[0]["dur"]
        model_runs = model_runs[1:]  # the first run allocates and plans: not counted
        by_op: dict[str, float] = collections.defaultdict(float)
        count: collections.Counter[str] = collections.Counter()
        nodes: dict[tuple[str, str], float] = collections.defaultdict(float)
        for e in events:
            if (e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
                    and e["ts"] > first_end):
                op = e["args"]["op_name"]
                by_op[op] += e["dur"]
                count[op] += 1
                nodes[(e["name"].removesuffix("_kernel_time"), op)] += e["dur"]
        n = len(model_runs)
        total = sum(by_op.values())
        out.append({
            "variant": v,
            "runs": n,
            "model_run_ms": statistics.median(r["dur"] / 1000 for r in model_runs),
            "kernel_ms": total / n / 1000,
            "by_op": [
                {"op": op, "ms": d / n / 1000, "pct": 100 * d / total, "nodes": count[op] // n}
                for op, d in sorted(by_op.items(), key=lambda t: -t[1])
            ],
            "top_nodes": [
                {"node": k[0], "op": k[1], "ms": d / n / 1000}
                for k, d in sorted(nodes.items(), key=lambda t: -t[1])[:8]
            ],
        })
    return out


# --------------------------------------------------------------------------------- hardnet-pad


def pad_hardnet(model: Any, multiple: int = 16) -> Any:
    """A copy of DESANet-HN whose harmonic layers have zero channels appended up to a multiple
    of ``multiple`` (output-identical: padded channels are exact zeros through conv, BN with
    gamma = beta = 0, ReLU6 and the depthwise conv; consumers get zero input columns).

    An experiment for the onnxruntime offender below (HarDNet widths 14, 24, 40, 68 ... keep
    Concat and the convs after it out of onnxruntime's 16-channel-blocked NCHWc kernels).
    """
    import copy

    import torch
    from torch import nn

    from edgeseg.models.hardnet import HarDBlock

    def up(c: int) -> int:
        return -(-c // multiple) * multiple

    def pad_bn(bn: Any, c: int) -> nn.BatchNorm2d:
        new: Any = nn.BatchNorm2d(c, eps=bn.eps).eval()
        n = bn.num_features
        with torch.no_grad():
            new.weight.zero_()
            new.bias.zero_()
            new.running_mean.zero_()
            new.running_var.fill_(1.0)
            new.weight[:n] = bn.weight
            new.bias[:n] = bn.bias
            new.running_mean[:n] = bn.running_mean
            new.running_var[:n] = bn.running_var
        return new

    def remap_in(conv: nn.Conv2d, parts: list[tuple[int, int]], cout: int) -> nn.Conv2d:
        """1x1 conv reading concatenated parts (real, padded): zero columns for the padding."""
        new = nn.Conv2d(sum(p for _, p in parts), cout, 1, bias=False)
        with torch.no_grad():
            new.weight.zero_()
            o_old = o_new = 0
            for real, padded in parts:
                new.weight[: conv.out_channels, o_new:o_new + real] = (
                    conv.weight[:, o_old:o_old + real])
                o_old += real
                o_new += padded
        return new

    m: Any = copy.deepcopy(model).eval()
    base: Any = m.context_path.backbone.base
    for i, module in enumerate(base):
        if not isinstance(module, HarDBlock):
            continue
        blk: Any = module
        cin = blk.layers[0].layer1.conv.in_channels if len(blk.links[0]) == 1 else None
        assert cin is not None and cin % multiple == 0
        real = [cin] + [layer.layer1.conv.out_channels for layer in blk.layers]
        padded = [cin] + [up(c) for c in real[1:]]
        for k, (link, layer) in enumerate(zip(blk.links, blk.layers)):
            c, cp = real[k + 1], padded[k + 1]
            l1: Any = layer.layer1
            l2: Any = layer.layer2
            l1.conv = remap_in(l1.conv, [(real[j], padded[j]) for j in link], cp)
            l1.norm = pad_bn(l1.norm, cp)
            dw = nn.Conv2d(cp, cp, 3, 1, 1, groups=cp, bias=False)
            with torch.no_grad():
                dw.weight.zero_()
                dw.weight[:c] = l2.dwconv.weight
            l2.dwconv = dw
            l2.norm = pad_bn(l2.norm, cp)
        t = len(real)
        out_idx = [j for j in range(t) if j == t - 1 or j % 2 == 1]
        blk.out_channels = sum(padded[j] for j in out_idx)
        trans = base[i + 1]
        trans.conv = remap_in(trans.conv, [(real[j], padded[j]) for j in out_idx],
                              trans.conv.out_channels)
    return m.eval()


def flops_of(model: Any, hw: tuple[int, int]) -> float:
    """GFLOPs (multiply-add = 2) of this very module, on a meta-device copy."""
    import copy

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    twin = copy.deepcopy(model).to("meta").eval()
    twin.set_dcn_impl("portable")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        twin(torch.empty(1, 3, *hw, device="meta"))
    return counter.get_total_flops() / 1e9


def run_hardnet_pad(hw: tuple[int, int], rounds: int, workdir: Path) -> dict[str, Any]:
    """DESANet-HN as is vs with 16-padded harmonic layers, onnxruntime, interleaved."""
    import torch

    from edgeseg.artifacts.checkpoint import default_meta
    from edgeseg.deploy.onnx import export_onnx
    from edgeseg.models.desanet import build_model
    from edgeseg.models.summary import count_gflops
    from edgeseg.runtime.onnxruntime_backend import make_session

    torch.manual_seed(0)
    model = build_model("desanet-hn", aux=False).eval()
    padded = pad_hardnet(model)
    x = np.random.default_rng(0).standard_normal((1, 3, *hw)).astype(np.float32)
    with torch.inference_mode():
        diff = float((model(torch.from_numpy(x)) - padded(torch.from_numpy(x))).abs().max())
    paths = {}
    for name, net in (("as is", model), ("padded to 16", padded)):
        onnx_path = workdir / f"desanet-hn-{name.replace(' ', '-')}.onnx"
        if not onnx_path.exists():
            log(f"exporting {onnx_path.name}")
            export_onnx(net, default_meta("desanet-hn", hw), onnx_path, height=hw[0],
                        width=hw[1], parity=False)
        paths[name] = onnx_path
    out: dict[str, Any] = {"max_abs_diff_torch": diff, "configs": {}}
    sessions = {}
    for threads in (2, 1):
        for name, path in paths.items():
            s, _ = make_session(path, threads=threads)
            s.run(None, {"input": x})
            sessions[(name, threads)] = s
    ms: dict[tuple[str, int], list[float]] = {k: [] for k in sessions}
    for r in range(rounds):
        for key, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, {"input": x})
            ms[key].append((time.perf_counter() - t0) * 1000)
        log(f"hardnet-pad round {r + 1}/{rounds}: " + ", ".join(
            f"{k[0]}/{k[1]}={v[-1]:.0f}" for k, v in ms.items()))
    g = count_gflops(model, *hw)
    gp = flops_of(padded, hw)  # count_gflops rebuilds the stock architecture: count this one
    for threads in (2, 1):
        a, b = ms[("as is", threads)], ms[("padded to 16", threads)]
        out["configs"][str(threads)] = {
            "as_is_ms": statistics.median(a), "padded_ms": statistics.median(b),
            "speedup": statistics.median(x_ / y_ for x_, y_ in zip(a, b)),
        }
    out.update(gflops=g, gflops_padded=gp, rounds=rounds)
    return out


# ----------------------------------------------------------------------------------- overhead


def run_overhead(hw: tuple[int, int], pairs: int, seconds: float, workdir: Path) -> dict:
    from edgeseg.bench.power import PowerSampler
    from edgeseg.bench.report import measure_overhead
    from edgeseg.bench.timing import time_callable

    class ProcStatSampler(PowerSampler):
        """Stand-in: reads /proc/stat (a sysfs-like read, as RAPL does) every interval."""

        name = "procstat"

        def probe(self) -> str | None:
            return None

        def _read(self) -> float:
            with open("/proc/stat") as f:
                return float(f.readline().split()[1])

    from edgeseg.runtime import open_segmenter

    path = export("desanet-rn", hw, "native", workdir / "desanet-rn-native.onnx")
    seg = open_segmenter(path)
    batch = np.random.default_rng(0).standard_normal((1, 3, *hw)).astype(np.float32)
    seg.infer(batch)
    machinery = measure_overhead()
    on: list[float] = []
    off: list[float] = []
    for i in range(pairs):
        for state in (("on", "off") if i % 2 == 0 else ("off", "on")):
            if state == "on":
                with ProcStatSampler(interval_s=0.1):
                    r = time_callable(lambda: seg.infer(batch), warmup_s=0, min_warmup=1,
                                      duration_s=seconds, min_iters=2)
                on.append(r.stats.mean_ms)
            else:
                r = time_callable(lambda: seg.infer(batch), warmup_s=0, min_warmup=1,
                                  duration_s=seconds, min_iters=2)
                off.append(r.stats.mean_ms)
    diffs = [100 * (a - b) / b for a, b in zip(on, off)]
    # the sampler's own cost, directly: CPU time of _read per call at the 0.1 s interval
    s = ProcStatSampler()
    t0 = time.thread_time()
    for _ in range(2000):
        s._read()
    read_ms = (time.thread_time() - t0) / 2000 * 1000
    mean_ms = statistics.median(off)
    return {
        **machinery,
        "timer_pct_at_latency": 100 * machinery["timer_ms"] / mean_ms,
        "stage_pct_at_latency": 100 * machinery["stage_frame_ms"] / mean_ms,
        "sampler_read_ms": read_ms,
        "sampler_cpu_pct": 100 * read_ms / 100.0,  # one read per 100 ms
        "ab_pairs": pairs,
        "ab_on_ms": on,
        "ab_off_ms": off,
        "ab_diff_pct_median": statistics.median(diffs),
        "ab_diff_pct_rounds": diffs,
        "latency_ms": mean_ms,
        "model": f"desanet-rn onnxruntime {hw[0]}x{hw[1]}",
    }


# --------------------------------------------------------------------------------------- main


def render(res: dict[str, Any], hw: tuple[int, int], args: argparse.Namespace) -> str:
    md = ["## `edgeseg bench`: speed targets and onnxruntime profile", "",
          f"Machine: {res['machine']}.", "",
          (f"`python benchmarks/bench_targets.py --height {hw[0]} --width {hw[1]} --rounds "
           f"{args.rounds}`: random-init networks (speed does not depend on the weights), "
           "batch 1, fp32, CPU. Medians of per-round figures; configurations interleaved "
           "within each round. The machine is shared and was loaded by other jobs, so "
           "absolute times are noisy; ratios are taken within a round.")]
    if "targets" in res:
        md += ["", ("### Targets (the bench tool: `run_bench(compare=\"torch:fp32,"
                    "onnxruntime:fp32\")`)"), "",
               ("| variant | threads | torch ms | onnxruntime ms | speedup (>= 1.5) | "
                "efficiency ORT | target | reference matmul GFLOP/s per round | load (1 min) "
                "per round | overhead |"),
               "|---|---|---|---|---|---|---|---|---|---|"]
        for t in res["targets"]:
            tgt = TARGET_EFFICIENCY[t["variant"]]
            md.append(
                f"| {t['variant']} | {t['threads']} | {t['torch_ms']:.0f} | "
                f"{t['onnxruntime_ms']:.0f} | {t['speedup']:.2f} "
                f"{'PASS' if t['speedup'] >= TARGET_SPEEDUP else 'FAIL'} | "
                f"{t['efficiency_onnxruntime']:.2f} | >= {tgt} "
                f"{_verdict(t['efficiency_onnxruntime'] >= tgt, t['reference'])} | "
                + ", ".join(f"{g:.1f}" for g in t["reference"]["matmul_gflops_per_round"])
                + " | " + ", ".join(f"{x:.1f}" for x in t["reference"]["load_avg_1m_per_round"])
                + f" | {t['overhead_pct']:.4f}% |")
        md.append("\nEfficiency: per round, achieved GFLOP/s over an fp32 matmul run in the same "
                  "process right before that round with the configuration's threads; median of "
                  "rounds. UNRELIABLE: the 1-minute load average exceeded the core count during "
                  "the run, so neither the model nor its reference had the cores.")
    if "options" in res:
        md += ["", "### Export and session options", "",
               "| variant | configuration | median ms | vs torch (same threads) | efficiency |",
               "|---|---|---|---|---|"]
        for o in res["options"]:
            for name, c in o["configs"].items():
                md.append(f"| {o['variant']} | {name} | {c['median_ms']:.0f} | "
                          f"{c['vs_torch_same_threads']:.2f}x | {c['efficiency']:.2f} |")
        md += ["", "GFLOPs (MAC = 2) at this size: " + ", ".join(
            f"{o['variant']} {o['gflops']:.1f}" for o in res["options"]) + "; fp32 matmul "
            "GFLOP/s (torch, n=1024, median of rounds): " + ", ".join(
            f"{o['variant']} run: {o['matmul_gflops']['2']:.1f} (2 thr) / "
            f"{o['matmul_gflops']['1']:.1f} (1 thr)" for o in res["options"]) + "."]
    if "profile" in res:
        md += ["", "### Where onnxruntime spends its time (default session, native DCN)", ""]
        for p in res["profile"]:
            md += [(f"{p['variant']}: model run {p['model_run_ms']:.0f} ms (median of "
                    f"{p['runs']}), kernels {p['kernel_ms']:.0f} ms."), "",
                   "| op type | ms/run | share | nodes |", "|---|---|---|---|"]
            md += [f"| {b['op']} | {b['ms']:.1f} | {b['pct']:.1f}% | {b['nodes']} |"
                   for b in p["by_op"][:8]]
            share = {b["op"]: b["pct"] for b in p["by_op"]}
            layout = sum(share.get(k, 0.0) for k in ("ReorderInput", "ReorderOutput", "Concat"))
            md += ["", (f"Layout traffic (ReorderInput + ReorderOutput + Concat): {layout:.1f}%; "
                        f"the one DeformConv: {share.get('DeformConv', 0.0):.1f}%; Upsample "
                        f"(4 bilinear resizes, the last one of the 19-class logits to full "
                        f"size): {share.get('Upsample', 0.0):.1f}%.")]
            md += [""]
    if "hardnet_pad" in res:
        p = res["hardnet_pad"]
        md += ["", "### Experiment: HarDNet layer widths padded to 16 channels (DESANet-HN)", "",
               (f"Zero channels appended to every harmonic layer (output-identical: max |diff| "
                f"{p['max_abs_diff_torch']:.1e} in torch), so Concat and the convs after it "
                "can stay in onnxruntime's NCHWc (16-channel blocked) kernels. GFLOPs "
                f"{p['gflops']:.1f} -> {p['gflops_padded']:.1f}. Median of {p['rounds']} "
                "interleaved rounds:"), "",
               "| threads | as is ms | padded ms | speedup |", "|---|---|---|---|"]
        md += [f"| {t} | {c['as_is_ms']:.0f} | {c['padded_ms']:.0f} | {c['speedup']:.2f}x |"
               for t, c in p["configs"].items()]
        ups = [c["speedup"] for c in p["configs"].values()]
        if min(ups) < 1.0 < max(ups):
            md += ["", ("No consistent gain: the reorders go, but the convs on the padded "
                        "channels and the blocked Concat cost about as much; not recommended.")]
    if "overhead" in res:
        o = res["overhead"]
        md += ["", "### Measurement overhead", "", (
               f"Empty callable through the timed loop: {o['timer_ms'] * 1000:.2f} us per "
               f"sample ({o['timer_pct_at_latency']:.5f}% of {o['model']} at "
               f"{o['latency_ms']:.0f} ms); stage timer: {o['stage_frame_ms'] * 1000:.2f} us "
               f"per frame. Sampler read {o['sampler_read_ms'] * 1000:.1f} us every 100 ms = "
               f"{o['sampler_cpu_pct']:.4f}% of a core. Sampler on vs off, {o['ab_pairs']} "
               f"interleaved pairs: median difference {o['ab_diff_pct_median']:+.2f}% "
               "(noise of this shared machine; the direct figures above are the overhead).")]
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=2, help="calls per config per round (options)")
    ap.add_argument("--iters", type=int, default=6, help="timed calls per config (targets)")
    ap.add_argument("--sections", default="options,targets,profile,overhead,hardnet-pad")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--worker-options", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--previous", type=Path, default=None,
                    help="JSON of an earlier --json run: keep its sections, rerun --sections")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    hw = (a.height, a.width)
    if a.worker_options:
        print(json.dumps(options_worker(a.worker_options, hw, a.rounds, a.calls, a.workdir)))
        return 0
    sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    res: dict[str, Any] = {"machine": machine_line(), "input_hw": list(hw)}
    if a.previous is not None:
        res = {**res, **json.loads(a.previous.read_text())}  # its machine line: its numbers
    with tempfile.TemporaryDirectory(prefix="edgeseg-targets-") as tmp:
        work = a.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if "options" in sections:
            res["options"] = run_options(hw, a.rounds, a.calls, work)
        if "targets" in sections:
            res["targets"] = run_targets(hw, a.iters, min(a.rounds, a.iters))
        if "profile" in sections:
            res["profile"] = run_profile(hw, 4, work)
        if "overhead" in sections:
            res["overhead"] = run_overhead(hw, 6, 3.0, work)
        if "hardnet-pad" in sections:
            res["hardnet_pad"] = run_hardnet_pad(hw, 2 * a.rounds, work)
    text = render(res, hw, a)
    log(text)
    if a.json:
        print(json.dumps(res, indent=2))
    if not a.no_write:
        write_section("bench_targets", text)
        log(f"wrote {DOC.relative_to(ROOT)} (bench_targets section)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
