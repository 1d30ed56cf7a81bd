"""Training iterations/s: the real data pipeline vs pre-loaded tensors, both DESANet variants.

    python benchmarks/train_speed.py --crop 128x256 --batch 8 --iters 20 --workers 1

For each variant, in one run: (a) the real pipeline (PNG decode + scale/crop/flip/jitter/GridMask
in DataLoader workers, `edgeseg.train.loop.build_loader`), (b) the same batch pre-loaded and
reused. Both run the full training step (forward, OHEM CE + aux CE [+ RMI], backward, SGD step).
Rounds alternate (a) and (b); medians are reported. Target: (a) within 10% of (b), i.e. the data
pipeline is not the bottleneck. Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import load_average, machine_line, publish  # noqa: E402

TARGET = 0.90  # the real pipeline within 10% of pre-loaded tensors


def _step(model, criterion, opt, images, labels) -> None:  # noqa: ANN001
    main, aux = model(images)
    loss, _ = criterion(main, aux, labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def measure(variant: str, data: Path, crop: tuple[int, int], batch: int, iters: int,
            workers: int, rounds: int, rmi: bool) -> dict:
    import torch

    from edgeseg.models.desanet import build_model
    from edgeseg.train.config import load_train_config
    from edgeseg.train.loop import Dist, build_criterion, build_loader

    cfg = load_train_config(None, model=variant, data=str(data), split="train", crop=crop,
                            batch=batch, workers=workers, rmi=rmi, iters=10**6)
    torch.manual_seed(0)
    model = build_model(variant).train().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.param_groups(cfg.weight_decay), lr=1e-3, momentum=0.9)
    criterion = build_criterion(cfg, 19)
    batches = iter(build_loader(cfg, Dist(), 0, torch.device("cpu")))
    fixed = next(batches)
    _step(model, criterion, opt, *fixed)  # warm-up (oneDNN primitive creation)
    real, preloaded = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(iters):
            images, labels = next(batches)
            _step(model, criterion, opt, images.contiguous(memory_format=torch.channels_last), labels)
        real.append(iters / (time.perf_counter() - t))
        t = time.perf_counter()
        for _ in range(iters):
            _step(model, criterion, opt, fixed[0].contiguous(memory_format=torch.channels_last), fixed[1])
        preloaded.append(iters / (time.perf_counter() - t))
    r, p = statistics.median(real), statistics.median(preloaded)
    return {"variant": variant, "real_it_s": r, "preloaded_it_s": p, "ratio": r / p}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crop", default="128x256")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=10, help="iterations per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--rmi", action="store_true", help="include the RMI term")
    ap.add_argument("--models", default="desanet-hn,desanet-rn")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    from rich.table import Table

    from edgeseg.data.synthetic import write_synthetic_cityscapes
    from edgeseg.sizes import parse_hw

    h, w = parse_hw(args.crop, "--crop", minimum=32)

    host, load0 = machine_line(), load_average()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "synth"
        write_synthetic_cityscapes(data, train=64, val=1, height=h * 2, width=w * 2, seed=0)
        rows = [measure(m, data, (h, w), args.batch, args.iters, args.workers, args.rounds, args.rmi)
                for m in args.models.split(",")]
    load1 = load_average()
    table = Table(title=f"training it/s at crop {h}x{w}, batch {args.batch}, {args.workers} worker(s)")
    for col in ("model", "real pipeline it/s", "pre-loaded it/s", f"ratio (target >= {TARGET:.2f})"):
        table.add_column(col)
    md = ["## Training speed: data pipeline vs pre-loaded tensors\n", f"Machine: {host}.\n",
          f"`python benchmarks/train_speed.py --crop {args.crop} --batch {args.batch} --iters "
          f"{args.iters} --rounds {args.rounds} --workers {args.workers}`: scenes generated at "
          f"{2 * h}x{2 * w} (decode + scale 0.5-2 + crop + flip + jitter + GridMask), OHEM CE + aux CE"
          f"{' + RMI' if args.rmi else ''}, SGD; medians of rounds that alternate the two. Load "
          f"average (1/5/15 min) {load0} before, {load1} after.\n",
          f"| model | real pipeline it/s | pre-loaded it/s | ratio (target >= {TARGET:.2f}) |",
          "|---|---|---|---|"]
    cells = ((r["variant"], f"{r['real_it_s']:.3f}", f"{r['preloaded_it_s']:.3f}",
              f"{r['ratio']:.3f} {'PASS' if r['ratio'] >= TARGET else 'MISS'}") for r in rows)
    publish(None if args.no_write else "train_speed", table, md, cells)


if __name__ == "__main__":
    main()
