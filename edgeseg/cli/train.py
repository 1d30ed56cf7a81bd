"""`edgeseg train` and `edgeseg eval`: thin wrappers over edgeseg.train."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeseg.cli._util import (
    JsonOpt,
    WeightsAlias,
    command,
    console,
    deprecated,
    emit_json,
    model_option,
    progress,
)
from edgeseg.runtime.devices import DEVICE_HELP


@command("train", help="Train DESANet (paper 4.1 recipe; torchrun for multi-GPU).")
def train_cli(
    model: str = typer.Option("desanet-hn", "--model", "-m", help="desanet-hn or desanet-rn."),
    data: Path = typer.Option(..., "--data", help="Cityscapes-layout root (real or synthetic)."),
    out: Path = typer.Option(..., "--out", help="Run directory (checkpoints, metrics.jsonl)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML of training options."),
    recipe: str = typer.Option(
        "paper", "--recipe", help="Starting options under --config and flags: paper (section 4.1) "
        "or cpu-quick (minutes on a CPU, synthetic scenes at 128x256)."
    ),
    iters: Optional[int] = typer.Option(None, "--iters", min=1, help="Iterations [640000]."),
    time_budget: Optional[str] = typer.Option(
        None, "--time-budget", help="Wall time for training, e.g. 5m or 300s: the poly schedule "
        "is fixed to the iterations that fit, measured over a few steps (at most --iters)."
    ),
    batch: Optional[int] = typer.Option(None, "--batch", min=1, help="Batch per process [3]."),
    crop: Optional[str] = typer.Option(None, "--crop", help="Crop HxW or N [1024]."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Initial learning rate [0.005]."),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="sgd (paper) or adamw."),
    warmup: Optional[int] = typer.Option(None, "--warmup", min=0, help="Linear warm-up iters."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Loader workers [4]."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Run seed [0]."),
    split: Optional[str] = typer.Option(None, "--split", help="Training split [trainval]."),
    backbone_weights: Optional[Path] = typer.Option(
        None, "--backbone-weights", help="ImageNet checkpoint for the context path."
    ),
    ckpt_every: Optional[int] = typer.Option(None, "--ckpt-every", help="Checkpoint interval."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Val interval (0: end)."),
    no_rmi: bool = typer.Option(False, "--no-rmi", help="Drop the RMI term (quick runs)."),
    no_gridmask: bool = typer.Option(False, "--no-gridmask", help="Disable GridMask."),
    amp: Optional[bool] = typer.Option(
        None, "--amp/--no-amp",
        help="Mixed precision: float16 on CUDA [on]; bfloat16 on CPUs that have it "
        "[cpu-quick: on].",
    ),
    sync_bn: bool = typer.Option(False, "--sync-bn", help="SyncBatchNorm under torchrun."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also log to TensorBoard."),
    device: Optional[str] = typer.Option(None, "--device", help=f"{DEVICE_HELP} [auto]."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue from a checkpoint."),
    json_: bool = JsonOpt,
) -> None:
    from edgeseg.sizes import parse_hw
    from edgeseg.train.budget import parse_duration
    from edgeseg.train.config import load_train_config
    from edgeseg.train.loop import Dist, train

    cfg = load_train_config(
        config,
        recipe=recipe,
        model=model, data=str(data), out=str(out), iters=iters, batch=batch,
        crop=parse_hw(crop, "--crop", square=True) if crop else None, lr=lr, optimizer=optimizer,
        warmup_iters=warmup, workers=workers, seed=seed, split=split,
        backbone_weights=str(backbone_weights) if backbone_weights else None,
        ckpt_every=ckpt_every, eval_every=eval_every, rmi=False if no_rmi else None,
        gridmask=False if no_gridmask else None, sync_bn=sync_bn or None,
        tensorboard=tensorboard or None, device=device, amp=amp,
        time_budget_s=parse_duration(time_budget) if time_budget is not None else None,
    )
    main = Dist.from_env().main
    start = 0
    if resume is not None:
        from edgeseg.train.checkpoint import load_checkpoint

        start = int(load_checkpoint(resume).get("iteration", 0))
    with progress("train", cfg.iters - start if main else None) as bar:

        def on_step(it: int, info: dict[str, float]) -> None:
            if main:
                bar(1, " ".join(f"{k} {v:.3g}" for k, v in info.items() if k != "total"))

        def on_schedule(total: int) -> None:  # the budget fixed the length: rescale the bar
            bar.total = total - start
            bar.bar.update(bar.task, total=bar.total)

        result = train(cfg, resume=resume, on_step=on_step, log=console.print,
                       on_schedule=on_schedule if main else None)
    if not main:
        return
    report = {
        "checkpoint": str(result.checkpoint),
        "iterations": result.iteration,
        "final_loss": result.losses[-1] if result.losses else None,
        "interrupted": result.interrupted,
        "seconds": round(result.seconds, 1),
        "schedule": result.schedule,
        "eval": result.eval,
    }
    if json_:
        emit_json(report)
    else:
        _print_eval(result.eval or {}, title=f"{cfg.model}: {result.iteration} iterations")
        console.print(f"checkpoint: {result.checkpoint}")
    if result.interrupted:
        raise typer.Exit(130)


@command("eval", help="mIoU and per-class IoU of a checkpoint on a Cityscapes-layout split.")
def eval_cli(
    model: Optional[str] = model_option(
        "Checkpoint (.pt) from edgeseg train, an ONNX or a TensorRT engine."),
    weights: Optional[Path] = WeightsAlias,
    data: Path = typer.Option(..., "--data", help="Cityscapes-layout root."),
    split: str = typer.Option("val", "--split", help="train, val or trainval."),
    save_pred: Optional[Path] = typer.Option(
        None, "--save-pred", help="Write submission PNGs (Cityscapes label ids) here."
    ),
    device: str = typer.Option("auto", "--device", help=f"Torch device: {DEVICE_HELP}."),
    json_: bool = JsonOpt,
) -> None:
    from edgeseg.artifacts.job import resolve_job
    from edgeseg.data.cityscapes import CityscapesDataset
    from edgeseg.train.evaluate import evaluate

    deprecated("--model", weights=weights)
    job = resolve_job("eval", model=model, weights=weights)
    assert job.path is not None
    with progress("eval", len(CityscapesDataset(data, split))) as bar:
        report = evaluate(job.path, data, split, save_pred, on_image=bar,
                          device=device)
    if json_:
        emit_json(report)
    else:
        _print_eval(report, title=f"{job.path.name} on {split}")


def _print_eval(report: dict, title: str) -> None:
    if not report:
        return
    from rich.table import Table

    table = Table(title=title)
    table.add_column("class")
    table.add_column("IoU", justify="right")
    for name, v in report["iou_per_class"].items():
        table.add_row(name, "—" if v is None else f"{v:.3f}")
    table.add_row("[bold]mIoU", f"[bold]{report['miou']:.3f}")
    table.add_row("pixel accuracy", f"{report['pixel_accuracy']:.3f}")
    console.print(table)
