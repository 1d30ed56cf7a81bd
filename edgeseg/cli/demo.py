"""`edgeseg demo`: the whole workflow on CPU with synthetic data, no downloads."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeseg.cli._util import JsonOpt, command, console, emit_json, interactive, progress

STAGES = 7


@command("demo", help="Run the whole workflow on CPU: synth, train, eval, export, INT8, bench, run.")
def demo_cli(
    out: Path = typer.Option(Path("outputs"), "--out", help="Folder for every result."),
    quick: bool = typer.Option(False, "--quick", help="Tiny sizes (a smoke test, minutes)."),
    iters: int = typer.Option(
        None, "--iters", min=1, help="Training iterations [the cpu-quick recipe's]."
    ),
    json_: bool = JsonOpt,
) -> None:
    from dataclasses import replace

    from edgeseg.demo import DemoSettings, run_demo

    settings = DemoSettings.quick() if quick else DemoSettings()
    if iters:
        settings = replace(settings, iters=iters)
    with progress("demo", STAGES) as bar:
        first = [True]

        def on_step(name: str) -> None:
            if not first[0]:
                bar(1)
            first[0] = False
            console.print(f"[bold]>[/] {name}")

        def on_train(it: int, total: int, loss: float) -> None:
            text = f"train {it}/{total}, loss {loss:.3f}"
            bar.note(text)
            if not interactive() and (it % max(1, total // 10) == 0 or it == total):
                console.print(f"  {text}")  # no live bar on CI: ten plain lines

        summary = run_demo(out, settings, on_step=on_step, on_train=on_train, log=lambda m: None)
        bar(1)
    if json_:
        emit_json(summary)
        return
    _print_summary(summary, out)


def _print_summary(s: dict, out: Path) -> None:
    from rich.table import Table

    t = Table(title="edgeseg demo (CPU, synthetic scenes)")
    t.add_column("step")
    t.add_column("result")
    t.add_column("seconds", justify="right")
    times = s["timings_s"]
    ev, cal, run = s["eval"], s["calibrate"], s["run"]
    parity = s["export"].get("parity") or {}
    rows = [
        ("synthetic scenes", f"{s['settings']['train_images']} train / {s['settings']['val_images']} val", "synthetic scenes"),
        ("train", f"{s['train']['iterations']} iterations, loss {s['train']['final_loss']:.3f}", "train"),
        ("eval", f"val mIoU {ev['miou']:.3f}, pixel accuracy {ev['pixel_accuracy']:.3f}", "eval"),
        ("export onnx", f"parity agreement {parity.get('agreement', float('nan')):.4f}", "export onnx"),
        ("calibrate int8", f"agreement {_f(cal.get('agreement'))}, speed-up {_f(cal.get('speedup'))}x", "calibrate int8"),
        ("bench", _bench_line(s["bench"]), "bench fp32 vs int8"),
        ("run on video", f"{run['frames']} frames at {run['fps']:.1f} FPS -> overlay.mp4", "run on video"),
    ]
    for step, result, key in rows:
        t.add_row(step, result, f"{times.get(key, 0):.0f}")
    console.print(t)
    console.print(f"outputs in {out}/: " + ", ".join(sorted(s["outputs"])))


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _bench_line(bench: dict) -> str:
    return ", ".join(f"{c['backend']} {c['precision']} {c['fps']:.1f} FPS" for c in bench["configs"])
