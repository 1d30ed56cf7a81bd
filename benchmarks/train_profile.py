"""Where one CPU training step spends its time, and which layout / thread count is faster.

    python benchmarks/train_profile.py --crop 128x256 --batch 4 --steps 3 --rounds 3

Part 1 (A/B): the cpu-quick training step (forward, OHEM CE + aux CE, backward, AdamW step) on
pre-loaded tensors, for each configuration of ``--configs`` (memory layout x torch threads);
rounds interleave the configurations, so a neighbour's load hits them alike; the table gives the
median step time and its ratio to the first configuration within each round.
Part 2: torch.profiler over ``--steps`` steps of the first configuration: self CPU time per
operator (top ``--top``) and per phase (data, forward, loss, backward, optimizer).
Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import load_average, machine_line, write_section  # noqa: E402

PHASES = ("data", "forward", "loss", "backward", "optimizer")


def build(crop: tuple[int, int], batch: int, data: Path, channels_last: bool):  # noqa: ANN201
    import torch

    from edgeseg.models.desanet import build_model
    from edgeseg.train.config import load_train_config
    from edgeseg.train.loop import Dist, build_criterion, build_loader, build_optimizer

    cfg = load_train_config(None, recipe="cpu-quick", data=str(data), crop=crop, batch=batch,
                            channels_last=channels_last)
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(cfg, model)
    criterion = build_criterion(cfg, 19)
    loader = iter(build_loader(cfg, Dist(), 0, torch.device("cpu")))
    return model, opt, criterion, loader


def step(model, opt, criterion, batch, channels_last: bool, mark=None) -> None:  # noqa: ANN001
    from contextlib import nullcontext

    import torch

    mark = mark or (lambda name: nullcontext())
    images, labels = batch
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with mark("forward"):
        main, aux = model(images)
    with mark("loss"):
        loss, _ = criterion(main, aux, labels)
    with mark("backward"):
        opt.zero_grad(set_to_none=True)
        loss.backward()
    with mark("optimizer"):
        opt.step()


def ab(configs: list[tuple[str, int]], crop, batch, data, steps, rounds) -> list[dict]:  # noqa: ANN001
    import torch

    built = {}
    for layout, threads in configs:
        key = (layout, threads)
        if layout not in {k[0] for k in built}:
            m, o, c, loader = build(crop, batch, data, layout == "channels_last")
            fixed = next(loader)
            built[key] = (m, o, c, fixed)
        else:
            built[key] = next(v for k, v in built.items() if k[0] == layout)
    times: dict[tuple[str, int], list[float]] = {k: [] for k in built}
    cpu: dict[tuple[str, int], list[float]] = {k: [] for k in built}
    ratios: dict[tuple[str, int], list[float]] = {k: [] for k in built}
    for key, (m, o, c, fixed) in built.items():  # warm-up: oneDNN primitive creation
        torch.set_num_threads(key[1])
        step(m, o, c, fixed, key[0] == "channels_last")
    for _ in range(rounds):
        this: dict[tuple[str, int], float] = {}
        for key, (m, o, c, fixed) in built.items():
            torch.set_num_threads(key[1])
            t, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps):
                step(m, o, c, fixed, key[0] == "channels_last")
            this[key] = (time.perf_counter() - t) / steps
            times[key].append(this[key])
            cpu[key].append((time.process_time() - c0) / steps)
        first = this[next(iter(built))]
        for key in built:
            ratios[key].append(this[key] / first)
    return [{"layout": k[0], "threads": k[1], "step_s": statistics.median(times[k]),
             "ratio": statistics.median(ratios[k]), "rounds": times[k],
             "cpu_s": statistics.median(cpu[k])} for k in built]


def profile(layout: str, threads: int, crop, batch, data, steps: int,  # noqa: ANN001
            top: int) -> tuple[list, dict]:
    import torch
    from torch.profiler import ProfilerActivity, record_function
    from torch.profiler import profile as tprofile

    torch.set_num_threads(threads)
    m, o, c, loader = build(crop, batch, data, layout == "channels_last")
    step(m, o, c, next(loader), layout == "channels_last")  # warm-up
    with tprofile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            with record_function("data"):
                b = next(loader)
            step(m, o, c, b, layout == "channels_last", mark=record_function)
    events = prof.key_averages()
    phases = {e.key: e.cpu_time_total / 1e3 / steps for e in events if e.key in PHASES}
    ops = sorted((e for e in events if e.key not in PHASES),
                 key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    rows = [{"op": e.key, "ms": e.self_cpu_time_total / 1e3 / steps,
             "share": e.self_cpu_time_total / total, "calls": e.count // steps} for e in ops[:top]]
    return rows, phases


def optimizer_variants(threads: int, reps: int = 10) -> list[tuple[str, float]]:
    """ms per AdamW step over DESANet-HN's parameters: torch's per-tensor loop (its CPU
    default), ``foreach`` and ``fused`` (what build_optimizer picks)."""
    import torch

    from edgeseg.models.desanet import build_model

    torch.set_num_threads(threads)
    model = build_model("desanet-hn")
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    out = []
    for name, kw in (("for-loop", {"foreach": False}), ("foreach", {"foreach": True}),
                     ("fused", {"fused": True})):
        opt = torch.optim.AdamW(model.param_groups(5e-4), lr=1e-3, **kw)
        for _ in range(3):
            opt.step()
        t = time.perf_counter()
        for _ in range(reps):
            opt.step()
        out.append((name, (time.perf_counter() - t) / reps * 1e3))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crop", default="128x256")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3, help="steps per round and profiled steps")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--configs", default="contiguous:2,channels_last:2,contiguous:1",
                    help="layout:threads, comma-separated; the first is the reference")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    from edgeseg.data.synthetic import write_synthetic_cityscapes
    from edgeseg.sizes import parse_hw

    h, w = parse_hw(args.crop, "--crop", minimum=32)
    configs = [(c.split(":")[0], int(c.split(":")[1])) for c in args.configs.split(",")]
    host, load0 = machine_line(), load_average()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "synth"
        write_synthetic_cityscapes(data, train=16, val=1, height=h, width=w, seed=0)
        rows = ab(configs, (h, w), args.batch, data, args.steps, args.rounds)
        ops, phases = profile(*configs[0], (h, w), args.batch, data, args.steps, args.top)
    optim = optimizer_variants(configs[0][1])
    load1 = load_average()
    md = ["## Training step profile (CPU)\n", f"Machine: {host}.\n",
          f"`python benchmarks/train_profile.py --crop {args.crop} --batch {args.batch} --steps "
          f"{args.steps} --rounds {args.rounds} --configs {args.configs}`: the cpu-quick step "
          "(DESANet-HN, OHEM CE + aux CE, AdamW) on pre-loaded tensors, float32. Load average "
          f"(1/5/15 min) {load0} before, {load1} after; the machine is shared, so compare the "
          "ratios (same round) rather than the seconds. Process CPU time per step counts "
          "every thread, spin-waits included; with one thread it is the work itself, "
          "whatever the neighbours do.\n",
          "| layout | torch threads | step s (median) | x first config (median of rounds) | "
          "process CPU s/step | rounds s |", "|---|---:|---:|---:|---:|---|"]
    t = Table(title=f"training step at {h}x{w}, batch {args.batch}")
    for col in ("layout", "threads", "step s", "x first", "CPU s", "rounds"):
        t.add_column(col)
    for r in rows:
        cells = (r["layout"], str(r["threads"]), f"{r['step_s']:.3f}", f"{r['ratio']:.2f}",
                 f"{r['cpu_s']:.3f}", ", ".join(f"{x:.2f}" for x in r["rounds"]))
        t.add_row(*cells)
        md.append("| " + " | ".join(cells) + " |")
    console.print(t)
    layout, threads = configs[0]
    md += ["", f"Phases ({layout}, {threads} threads; wall ms per step, torch.profiler):\n",
           "| phase | ms/step |", "|---|---:|"]
    md += [f"| {p} | {phases.get(p, 0.0):.0f} |" for p in PHASES]
    md += ["", f"Top {args.top} operators by self CPU time ({layout}, {threads} threads; CPU "
           "time summed over threads, so shares are of the profiled total):\n",
           "| operator | self ms/step | share | calls/step |", "|---|---:|---:|---:|"]
    t2 = Table(title="self CPU time per operator")
    for col in ("operator", "self ms/step", "share", "calls/step"):
        t2.add_column(col)
    for r in ops:
        cells = (f"`{r['op']}`", f"{r['ms']:.1f}", f"{100 * r['share']:.1f}%", str(r["calls"]))
        t2.add_row(r["op"], *cells[1:])
        md.append("| " + " | ".join(cells) + " |")
    console.print(t2)
    console.print({p: round(phases.get(p, 0.0)) for p in PHASES})
    md += ["", f"AdamW step over DESANet-HN's parameters ({configs[0][1]} threads; "
           "`build_optimizer` picks fused):\n", "| implementation | ms/step |", "|---|---:|"]
    md += [f"| {name} | {ms:.1f} |" for name, ms in optim]
    console.print({name: round(ms, 1) for name, ms in optim})
    if not args.no_write:
        write_section("train_profile", "\n".join(md))


if __name__ == "__main__":
    main()
