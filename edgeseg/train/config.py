"""Training configuration: paper section 4.1 defaults, overridable by YAML and flags."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError

__all__ = ["OPTIMIZERS", "RECIPES", "TrainConfig", "load_train_config"]

OPTIMIZERS = ("sgd", "adamw")


@dataclass
class TrainConfig:
    model: str = "desanet-hn"
    data: str = ""
    out: str = "runs/desanet"
    split: str = "trainval"  # the paper trains on fine train + val
    val_split: str = "val"
    iters: int = 640_000
    time_budget_s: float = 0.0  # > 0: iterations that fit this wall time (at most iters)
    batch: int = 3  # per process
    crop: tuple[int, int] = (1024, 1024)
    lr: float = 0.005
    optimizer: str = "sgd"  # the paper's; "adamw" converges faster from scratch on small data
    warmup_iters: int = 0  # linear warm-up before the poly decay
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    scale: tuple[float, float] = (0.5, 2.0)
    gridmask: bool = True
    color_jitter: bool = True
    rmi: bool = True  # L_RMI of eq. (2); off for quick runs on tiny crops
    workers: int = 4
    seed: int = 0
    backbone_weights: str | None = None
    ckpt_every: int = 5000
    eval_every: int = 0  # 0: evaluate at the end only
    log_every: int = 10
    amp: bool | None = None  # None: on for CUDA (float16); True on CPU: bfloat16 autocast
    channels_last: bool = True  # cuDNN NHWC convs; CPU: same step time (docs/benchmarks.md)
    sync_bn: bool = False
    tensorboard: bool = False
    device: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["crop"], d["scale"] = list(self.crop), list(self.scale)
        return d


_TUPLES = {"crop", "scale"}

# Named starting points under the YAML and the flags. "paper" is section 4.1 as written (the
# TrainConfig defaults). "cpu-quick" trains on 2 CPU cores on synthetic scenes from random init.
# Recorded in docs/benchmarks.md ("Training recipe", benchmarks/train_recipe.py): AdamW at
# lr 8e-3 reached val mIoU 0.615 after 1300 iterations at 128x256 where SGD (lr 0.05) reached
# 0.457. Earlier sweeps of batch size, lr, augmentation and dataset size were not recorded.
# bfloat16 autocast applies only on CPUs with native bf16 (float32 elsewhere).
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu-quick": dict(
        split="train", iters=1300, batch=4, crop=(128, 256), optimizer="adamw", lr=8e-3,
        warmup_iters=100, scale=(1.0, 1.0), color_jitter=False, gridmask=False, rmi=False,
        amp=True, workers=1, ckpt_every=0,
    ),
}


def load_train_config(
    path: str | Path | None, *, recipe: str = "paper", **overrides: Any
) -> TrainConfig:
    """Defaults < recipe < YAML file < flags (None = not given). Unknown keys are an error."""
    import yaml

    if recipe not in RECIPES:
        raise EdgesegError(f"--recipe: expected one of {', '.join(RECIPES)}, got '{recipe}'")
    values: dict[str, Any] = dict(RECIPES[recipe])
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise EdgesegError(f"training config not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise EdgesegError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise EdgesegError(f"{path}: expected a mapping of training options")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name: f for f in fields(TrainConfig)}
    for key, value in values.items():
        if key not in known:
            raise EdgesegError(f"{path or 'options'}: unknown training option '{key}'")
        if key in _TUPLES:
            if isinstance(value, (int, float)):
                value = (value, value)
            if not (isinstance(value, (list, tuple)) and len(value) == 2):
                raise EdgesegError(f"{path or 'options'}: {key}: expected two numbers, got {value!r}")
            values[key] = tuple(value)
    cfg = TrainConfig(**values)
    if cfg.iters <= 0 or cfg.batch <= 0:
        raise EdgesegError("iters and batch must be positive")
    where = f"{path}: " if path is not None else ""
    if cfg.optimizer not in OPTIMIZERS:
        raise EdgesegError(f"{where}optimizer: expected one of {', '.join(OPTIMIZERS)}, "
                           f"got {cfg.optimizer!r}")
    if cfg.warmup_iters < 0:
        raise EdgesegError(f"{where}warmup_iters must be >= 0, got {cfg.warmup_iters}")
    if not cfg.time_budget_s >= 0:
        raise EdgesegError(f"{where}time_budget_s must be >= 0, got {cfg.time_budget_s}")
    return cfg
