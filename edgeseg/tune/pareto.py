"""The Pareto front of the measured configurations, and its plot.

Objectives: network FPS (higher is better), accuracy (higher agreement, or lower mIoU drop
when labels were given) and, where every configuration has one, energy per frame (lower is
better). A configuration is on the front when no other is at least as good on every objective
and strictly better on one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeseg.atomic import atomic_path

__all__ = ["accuracy_of", "dominates", "objectives", "pareto_front", "plot_pareto"]


def accuracy_of(row: dict[str, Any]) -> float:
    """Higher is better: minus the mIoU drop when known, else the pixel agreement."""
    if row.get("miou_drop") is not None:
        return -float(row["miou_drop"])
    return float(row["agreement"])


def objectives(rows: Sequence[dict[str, Any]]) -> list[tuple[float, ...]]:
    """Per row, the objectives as values to maximise (energy negated when all rows have it)."""
    energy = bool(rows) and all(r.get("energy_mj_per_frame") is not None for r in rows)
    out = []
    for r in rows:
        v: tuple[float, ...] = (float(r["fps"]), accuracy_of(r))
        if energy:
            v += (-float(r["energy_mj_per_frame"]),)
        out.append(v)
    return out


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is at least as good as ``b`` everywhere and better somewhere (all maximised)."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def pareto_front(rows: Sequence[dict[str, Any]]) -> list[int]:
    """Indices of the non-dominated rows, fastest first."""
    obj = objectives(rows)
    front = [i for i, a in enumerate(obj) if not any(dominates(b, a) for b in obj)]
    return sorted(front, key=lambda i: -obj[i][0])


def plot_pareto(rows: Sequence[dict[str, Any]], front: Sequence[int], path: str | Path, *,
                target_fps: float, pick: int | None, accuracy_label: str) -> Path:
    """FPS vs accuracy, the front joined, the target FPS as a line, the pick circled.
    Written to a temporary file and renamed (no half-written PNG)."""

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(7.5, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    acc = [accuracy_of(r) if r.get("miou_drop") is None else float(r["miou_drop"]) for r in rows]
    fps = [float(r["fps"]) for r in rows]
    ax.scatter(fps, acc, color="#999999", label="measured", zorder=2)
    fx = [fps[i] for i in sorted(front, key=lambda i: fps[i])]
    fy = [acc[i] for i in sorted(front, key=lambda i: fps[i])]
    ax.plot(fx, fy, "o-", color="#1f77b4", label="Pareto front", zorder=3)
    for i, r in enumerate(rows):
        c = r["config"]
        ax.annotate(f"{c['height']}x{c['width']} {c['precision']}", (fps[i], acc[i]),
                    fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axvline(target_fps, color="#d62728", linestyle="--", label=f"target {target_fps:g} FPS")
    if pick is not None:
        ax.scatter([fps[pick]], [acc[pick]], s=220, facecolors="none", edgecolors="#2ca02c",
                   linewidths=2, label="pick", zorder=4)
    if rows and rows[0].get("miou_drop") is not None:
        ax.invert_yaxis()  # lower drop is better: keep "better" upwards
    ax.set_xlabel("network FPS (onnxruntime)")
    ax.set_ylabel(accuracy_label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
