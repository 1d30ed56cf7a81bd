"""Training configuration: paper section 4.1 defaults, overridable by YAML and flags."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError

__all__ = ["TrainConfig", "load_train_config"]


@dataclass
class TrainConfig:
    model: str = "desanet-hn"
    data: str = ""
    out: str = "runs/desanet"
    split: str = "trainval"  # the paper trains on fine train + val
    val_split: str = "val"
    iters: int = 640_000
    batch: int = 3  # per process
    crop: tuple[int, int] = (1024, 1024)
    lr: float = 0.005
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
    amp: bool | None = None  # None: on for CUDA
    channels_last: bool = True  # oneDNN and cuDNN both run NHWC convs faster (CPU: ~1.2x)
    sync_bn: bool = False
    tensorboard: bool = False
    device: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["crop"], d["scale"] = list(self.crop), list(self.scale)
        return d


_TUPLES = {"crop", "scale"}


def load_train_config(path: str | Path | None, **overrides: Any) -> TrainConfig:
    """Defaults < YAML file < flags (None = not given). Unknown YAML keys are an error."""
    import yaml

    values: dict[str, Any] = {}
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
    return cfg
