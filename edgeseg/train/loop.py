"""The training loop of paper section 4.1: SGD + poly schedule over a fixed iteration budget.

One process or many (`torchrun --nproc_per_node N -m edgeseg train ...`: DDP, optional
SyncBatchNorm). Checkpoints are atomic and complete (model, optimizer, scheduler, RNG,
iteration, config, metadata); `--resume` reproduces the uninterrupted run's losses because the
sampler and every sample's augmentation are functions of (seed, global position).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from edgeseg.errors import EdgesegError
from edgeseg.train.budget import (
    PROBE_SKIP,
    REPLAN_MARGIN,
    plan_iterations,
    probe_end,
    replan_every,
)
from edgeseg.train.checkpoint import (
    check_variant,
    default_meta,
    load_checkpoint,
    load_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from edgeseg.train.config import TrainConfig
from edgeseg.train.sampler import ResumableDistributedSampler

if TYPE_CHECKING:
    from edgeseg.data.cityscapes import CityscapesDataset

__all__ = [
    "Dist", "TrainResult", "build_criterion", "build_loader", "build_optimizer", "cpu_has_bf16",
    "lr_factor", "train",
]

CHECKPOINT_NAME = "last.pt"


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Dist:
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )


@dataclass
class TrainResult:
    checkpoint: Path
    iteration: int
    losses: list[float]
    eval: dict[str, Any] | None
    interrupted: bool = False
    seconds: float = 0.0
    schedule: dict[str, Any] = field(default_factory=dict)  # iters, time_budget_s, steps_per_s


class _KeyedDataset(Dataset):
    """Dataset indexed by (index, seed): the seed drives every random augmentation."""

    def __init__(self, base: Any, transform: Callable) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        image, mask = self.base.load(index)
        return self.transform(image, mask)


def _device(cfg: TrainConfig, dist: Dist) -> torch.device:
    from edgeseg.runtime.devices import parse_device

    # under torchrun each process takes its LOCAL_RANK's GPU for "cuda" and "auto"
    return parse_device(cfg.device, local_rank=dist.local_rank if dist.world_size > 1 else None)


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint at the end of the iteration."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (else autocast would emulate it, slowly)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum (paper 4.1) or AdamW; weight decay on conv/linear weights only."""
    groups = model.param_groups(cfg.weight_decay)  # type: ignore[operator]
    if cfg.optimizer == "adamw":
        # fused: one kernel over all parameters; on CPU 15 ms a step where torch's default
        # per-tensor loop takes 57 (DESANet-HN; docs/benchmarks.md, "Training step profile")
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32
                    for g in groups for p in g["params"])
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused or None)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


def lr_factor(cfg: TrainConfig, it: int) -> float:
    """Multiplier of the base lr at iteration ``it``: linear warm-up, then poly decay."""
    if it < cfg.warmup_iters:
        return (it + 1) / cfg.warmup_iters
    return max(0.0, 1 - it / cfg.iters) ** cfg.poly_power


def build_criterion(cfg: TrainConfig, num_classes: int,
                    class_weight: torch.Tensor | None = None) -> Callable:
    from edgeseg.train.losses import DesaNetLoss, OhemCELoss

    if cfg.rmi:
        return DesaNetLoss(num_classes, class_weight=class_weight)
    ohem = OhemCELoss(weight=class_weight)

    def ce_only(main: torch.Tensor, aux: torch.Tensor | None, target: torch.Tensor):
        terms = {"main_ce": ohem(main, target)}
        if aux is not None:
            terms["aux_ce"] = ohem(aux, target)
        total = sum(terms.values())
        return total, {**{k: float(v.detach()) for k, v in terms.items()}, "total": float(total.detach())}

    return ce_only


def build_loader(cfg: TrainConfig, dist: Dist, start_iter: int, device: torch.device,
                 dataset: CityscapesDataset | None = None):
    from edgeseg.data.cityscapes import CityscapesDataset
    from edgeseg.data.transforms import build_train_transform

    if dataset is None:  # not `or`: that would take len() of the given one
        dataset = CityscapesDataset(cfg.data, cfg.split)
    transform = build_train_transform(
        cfg.crop, scale=cfg.scale, gridmask=cfg.gridmask,
        jitter=(0.4, 0.4, 0.4, 0.0) if cfg.color_jitter else None,
    )
    sampler = ResumableDistributedSampler(
        len(dataset), cfg.seed, start_iter * cfg.batch * dist.world_size, dist.rank, dist.world_size
    )
    return DataLoader(
        _KeyedDataset(dataset, transform),
        batch_size=cfg.batch,
        sampler=sampler,
        num_workers=cfg.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=cfg.workers > 0,
        prefetch_factor=4 if cfg.workers > 0 else None,
    )


def _class_weight(cfg: TrainConfig, dataset: CityscapesDataset, device: torch.device,
                  log: Callable[[str], None]) -> torch.Tensor | None:
    from edgeseg.data.cityscapes import NUM_CLASSES
    from edgeseg.train.class_weight import class_weights

    weights = class_weights(cfg.class_weight, dataset, NUM_CLASSES)
    if weights is None:
        return None
    log(f"class weights ({cfg.class_weight}): {weights.min():.2f}-{weights.max():.2f}")
    return torch.from_numpy(weights).to(device)


def train(
    cfg: TrainConfig,
    *,
    resume: str | Path | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    log: Callable[[str], None] = print,
    on_schedule: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train DESANet per ``cfg``; returns the final checkpoint path, losses and eval metrics.

    With ``cfg.time_budget_s`` the total iterations are fixed from the timed warm-up steps
    (``budget.probe_end``; at most ``cfg.iters``; ``on_schedule(total)`` then reports them) and
    stored in the checkpoint, so ``resume`` continues that schedule. The budget counts wall time
    from this call to the last iteration; the final evaluation comes after it.
    """
    from edgeseg.models.desanet import build_model

    t_call = time.perf_counter()
    cfg = dataclasses.replace(cfg)  # a budget sets cfg.iters: leave the caller's config alone
    dist = Dist.from_env()
    device = _device(cfg, dist)
    if dist.world_size > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    amp = cfg.amp if cfg.amp is not None else device.type == "cuda"
    # CUDA: float16 with loss scaling; CPU: bfloat16 (float32's exponent range: no scaler),
    # faster only where oneDNN has native bf16 kernels (AVX512-BF16 / AMX), emulated elsewhere
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    if amp and device.type == "cpu" and not cpu_has_bf16():
        log("--amp: this CPU has no bfloat16 instructions; training in float32")
        amp = False
    channels_last = cfg.channels_last

    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT_NAME
    start_iter, ckpt = 0, None
    if resume is not None:
        ckpt = load_checkpoint(resume)
        if "optimizer" not in ckpt:
            raise EdgesegError(f"{resume}: weights-only checkpoint, cannot resume training")
        check_variant(ckpt, cfg.model, resume)
        start_iter = int(ckpt["iteration"])
    schedule: dict[str, Any] = {"iters": None if cfg.time_budget_s else cfg.iters,
                                "time_budget_s": cfg.time_budget_s, "steps_per_s": None}
    if ckpt is not None and (ckpt.get("schedule") or {}).get("iters") is not None \
            and ckpt["schedule"].get("time_budget_s"):
        schedule = dict(ckpt["schedule"])  # a budgeted run resumes on its own schedule
        cfg.iters, cfg.time_budget_s = int(schedule["iters"]), float(schedule["time_budget_s"])
        log(f"resuming the time-budgeted schedule: {cfg.iters} iterations")
    torch.manual_seed(cfg.seed)
    model: nn.Module = build_model(cfg.model, backbone_weights=cfg.backbone_weights)
    from edgeseg.data.cityscapes import NUM_CLASSES

    if dist.world_size > 1 and cfg.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    raw_model = model
    opt = build_optimizer(cfg, raw_model)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: lr_factor(cfg, it))
    scaler = torch.amp.GradScaler(device.type, enabled=amp and amp_dtype == torch.float16)
    if ckpt is not None:
        load_state(raw_model, ckpt["model"], resume)  # type: ignore[arg-type]
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        if "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
    if dist.world_size > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    meta = default_meta(cfg.model, tuple(cfg.crop))  # type: ignore[arg-type]
    # inputs (the dataset) are checked before anything is written: a bad --data leaves no run
    from edgeseg.data.cityscapes import CityscapesDataset

    dataset = CityscapesDataset(cfg.data, cfg.split)
    loader = build_loader(cfg, dist, start_iter, device, dataset)
    criterion = build_criterion(cfg, NUM_CLASSES, _class_weight(cfg, dataset, device, log))
    if device.type == "cpu" and (note := _loaded_cpu_note()):  # inputs are valid by now
        log(note)
    out.mkdir(parents=True, exist_ok=True)
    writer = _tensorboard(out, log) if (cfg.tensorboard and dist.main) else None
    metrics = _LazyLog(out / "metrics.jsonl") if dist.main else None

    def save(iteration: int) -> None:
        if dist.main:
            save_checkpoint(ckpt_path, {
                "model": raw_model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rng_state(),
                "iteration": iteration,
                "schedule": schedule,
                "config": cfg.to_dict(),
                "meta": meta.to_dict(),
            })

    losses: list[float] = []
    it, interrupted, t0 = start_iter, False, time.perf_counter()
    model.train()
    with _StopFlag() as stop:
        batches = iter(loader)
        t_last = time.perf_counter()
        probe_from, t_probe = start_iter + PROBE_SKIP, t_last
        probe_to = probe_end(start_iter, cfg.warmup_iters)
        # re-planning (budget.py): only in the run that planned; a resumed run keeps its plan
        cap, every, t_plan, it_plan = cfg.iters, 0, t_last, start_iter
        while it < cfg.iters:
            try:
                images, labels = next(batches)
            except EdgesegError as e:  # raised in a worker: keep the message, drop its traceback
                raise EdgesegError(_last_line(str(e))) from None
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            autocast = torch.autocast(device.type, dtype=amp_dtype) if amp else nullcontext()
            with autocast:
                main, aux = model(images)
            loss, terms = criterion(main.float(), aux.float(), labels)
            if not math.isfinite(float(loss.detach())):
                where = f"; last good checkpoint: {ckpt_path}" if ckpt_path.is_file() else ""
                raise EdgesegError(
                    f"loss became non-finite at iteration {it} ({_fmt(terms)}): lower --lr or "
                    f"check the labels{where}"
                )
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            it += 1
            losses.append(_global_mean(loss.detach(), dist))
            now = time.perf_counter()
            info = {**terms, "total": losses[-1], "lr": opt.param_groups[0]["lr"]}
            info["it_s"] = 1.0 / max(now - t_last, 1e-9)
            t_last = now
            if schedule["iters"] is None:
                if it == probe_from:
                    t_probe = now
                elif it == probe_to:
                    plan = _plan(cfg, dist, it, (it - probe_from) / (now - t_probe), now - t_call,
                                 cap)
                    schedule.update(plan)
                    cfg.iters = plan["iters"]
                    every, t_plan, it_plan = replan_every(cfg.iters, it), now, it
                    log(f"time budget {cfg.time_budget_s:.0f} s: {schedule['steps_per_s']:.2f} "
                        f"it/s over {probe_to - probe_from} steps -> {cfg.iters} iterations")
                    if on_schedule:
                        on_schedule(cfg.iters)
            elif every and (it - it_plan) % every == 0 and it < cfg.iters:
                # the rate since the last plan: a busier machine shortens the run, an idle one
                # lengthens it (up to the configured iterations)
                plan = _plan(cfg, dist, it, (it - it_plan) / (now - t_plan), now - t_call, cap,
                             margin=REPLAN_MARGIN)
                if plan["iters"] != cfg.iters:
                    schedule.update(plan, replans=int(schedule.get("replans") or 0) + 1)
                    cfg.iters = plan["iters"]
                    if on_schedule:
                        on_schedule(cfg.iters)
                t_plan, it_plan = now, it
            if metrics and (it % cfg.log_every == 0 or it == cfg.iters):
                metrics.write(json.dumps({"iter": it, **info}) + "\n")
                metrics.flush()
                if writer:
                    for k, v in info.items():
                        writer.add_scalar(f"train/{k}", v, it)
            if on_step:
                on_step(it, info)
            if stop.signal is not None:
                interrupted = True
                break
            if cfg.ckpt_every and it % cfg.ckpt_every == 0 and it < cfg.iters:
                save(it)
            if cfg.eval_every and it % cfg.eval_every == 0 and it < cfg.iters and dist.main:
                log(f"iteration {it}: val mIoU {_evaluate(cfg, raw_model, device)['miou']:.3f}")
        if schedule["iters"] is None and not interrupted:  # ended (at iters) before the probe did
            schedule["iters"] = cfg.iters = it
        save(it)
    if metrics:
        metrics.close()
    if interrupted:
        log(f"stopped by signal at iteration {it}; checkpoint saved: {ckpt_path} (--resume it)")
    result = None
    if dist.main and not interrupted and cfg.val_split:
        result = _evaluate(cfg, raw_model, device)
        (out / "eval.json").write_text(json.dumps(result, indent=2))
    if writer:
        writer.close()
    if dist.world_size > 1:
        torch.distributed.barrier()
    return TrainResult(ckpt_path, it, losses, result, interrupted, time.perf_counter() - t0,
                       dict(schedule))


def _plan(cfg: TrainConfig, dist: Dist, done: int, steps_per_s: float,
          elapsed_s: float, cap: int, margin: float | None = None) -> dict[str, Any]:
    """Plan the budgeted run's length; every rank takes the smallest plan (they must agree)."""
    total = plan_iterations(cfg.time_budget_s, elapsed_s, done, steps_per_s, cap,
                            **({"margin": margin} if margin is not None else {}))
    if dist.world_size > 1:
        t = torch.tensor([total], dtype=torch.int64)
        if torch.distributed.get_backend() == "nccl":
            t = t.cuda()
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
        total = int(t.item())
    return {"iters": total, "steps_per_s": round(steps_per_s, 4),
            "time_budget_s": cfg.time_budget_s}


def _loaded_cpu_note() -> str | None:
    """A hint when other processes hold the cores: torch's OpenMP threads then wait for each
    other at every op, and a step can take many times longer than with one thread."""
    threads = torch.get_num_threads()
    try:
        load, cores = os.getloadavg()[0], len(os.sched_getaffinity(0))
    except (OSError, AttributeError):
        return None
    if threads > 1 and load > cores:
        return (f"the CPU is busy (load average {load:.1f} on {cores} cores): with {threads} "
                "torch threads every op waits for preempted threads; OMP_NUM_THREADS=1 may "
                "train faster")
    return None


def _evaluate(cfg: TrainConfig, model: nn.Module, device: torch.device) -> dict[str, Any]:
    from edgeseg.data.cityscapes import CLASSES, CityscapesDataset
    from edgeseg.train.evaluate import evaluate_model

    try:
        val = CityscapesDataset(cfg.data, cfg.val_split)
    except EdgesegError:
        return {}
    return evaluate_model(model, val, list(CLASSES), str(device))


def _global_mean(value: torch.Tensor, dist: Dist) -> float:
    """The loss averaged over ranks, so logs read the same for any number of processes."""
    if dist.world_size > 1:
        value = value.clone()
        torch.distributed.all_reduce(value)
        value /= dist.world_size
    return float(value)


def _last_line(message: str) -> str:
    line = message.strip().splitlines()[-1]
    return line.split("EdgesegError: ", 1)[-1]


def _fmt(terms: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in terms.items())


class _LazyLog:
    """metrics.jsonl, opened (for appending) at the first line: a run that fails before its
    first logged iteration leaves no empty log behind."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: Any = None

    def write(self, line: str) -> None:
        if self._f is None:
            self._f = self.path.open("a")
        self._f.write(line)

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


def _tensorboard(out: Path, log: Callable[[str], None]) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log("tensorboard is not installed (pip install tensorboard): logging to metrics.jsonl only")
        return None
    return SummaryWriter(str(out / "tb"))
