"""PNG charts of a bench report (matplotlib, Agg canvas: no display, no global pyplot state).

* ``latency.png``: histogram of per-call inference latency per configuration, with the
  end-to-end frame time beside it, p50/p99 marked;
* ``cio.png``: CIO per convolution in execution order, coloured by component, and the
  per-component totals;
* ``compare.png``: inference and end-to-end FPS per configuration with the 95 % CI of the mean,
  and the roofline FPS ceiling of each.

The report must come from :func:`edgeseg.bench.report.run_bench` with ``samples=True`` for the
histogram and the per-layer bars; charts whose data is missing are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["cio_bars", "compare_chart", "latency_histogram", "write_plots"]


def _figure(w: float, h: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _label(r: dict[str, Any], sep: str) -> str:
    return f"{r['backend']}:{r['precision']}{sep}{r['input_hw'][0]}x{r['input_hw'][1]}"


def _configs(report: dict[str, Any]) -> list[dict[str, Any]]:
    return list(report["configs"]) if "configs" in report else [report]


def latency_histogram(results: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Inference (filled) and end-to-end (outline) latency histograms, one panel per config."""
    import numpy as np

    timed = [r for r in results if r.get("samples_ms")]
    if not timed:
        raise ValueError("no latency samples (run_bench(samples=True) on a timed run)")
    fig = _figure(7.0, 2.4 * len(timed) + 0.6)
    axes = fig.subplots(len(timed), 1, squeeze=False)[:, 0]
    for ax, r in zip(axes, timed):
        inf = np.asarray(r["samples_ms"]["inference"])
        e2e = np.asarray(r["samples_ms"].get("end_to_end", []))
        lo = float(min(inf.min(), e2e.min() if e2e.size else inf.min()))
        hi = float(max(inf.max(), e2e.max() if e2e.size else inf.max()))
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-3, 40)
        ax.hist(inf, bins=bins, alpha=0.7, label=f"inference (n={inf.size})")
        if e2e.size:
            ax.hist(e2e, bins=bins, histtype="step", linewidth=1.5,
                    label=f"end to end (n={e2e.size})")
        lat = r["latency_ms"]
        for q, style in (("p50", "-"), ("p99", "--")):
            ax.axvline(lat[q], color="k", linestyle=style, linewidth=1,
                       label=f"inference {q} {lat[q]:.2f} ms")
        ax.set_title(_label(r, " "), fontsize=10)
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("calls")
        ax.legend(fontsize=7)
    return _save(fig, Path(path))


def cio_bars(result: dict[str, Any], path: str | Path) -> Path:
    """Per-convolution CIO bars (execution order, colour = component) + component totals."""
    rows = result.get("cio_rows")
    if not rows:
        raise ValueError("no per-layer CIO rows (run_bench(samples=True))")
    comps = list(dict.fromkeys(r["component"] for r in rows))
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    colour = {c: cmap(i % 10) for i, c in enumerate(comps)}
    fig = _figure(11.0, 6.0)
    top, bottom = fig.subplots(2, 1, height_ratios=(2, 1))
    x = range(len(rows))
    from matplotlib.patches import Patch

    top.bar(x, [r["cio"] / 1e6 for r in rows], color=[colour[r["component"]] for r in rows],
            width=1.0)
    top.set_xlabel("convolution (execution order)")
    top.set_ylabel("CIO (M elements)")
    top.set_title(
        f"{result['model']['variant']} {result['input_hw'][0]}x{result['input_hw'][1]}: "
        f"CIO {result['cio_elements'] / 1e6:.1f} M elements, "
        f"DRAM ~{result['dram_mb']:.0f} MB/frame ({result['precision']})",
        fontsize=10,
    )
    top.legend(handles=[Patch(color=colour[c], label=c) for c in comps], fontsize=7, ncol=3)
    totals = result["cio_by_component"]
    names = sorted(totals, key=lambda k: -totals[k]["cio"])
    bottom.barh(names, [totals[n]["cio"] / 1e6 for n in names],
                color=[colour.get(n, "grey") for n in names])
    bottom.invert_yaxis()
    bottom.set_xlabel("CIO per component (M elements)")
    bottom.tick_params(axis="y", labelsize=7)
    return _save(fig, Path(path))


def compare_chart(results: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """FPS (inference, with 95 % CI) and end-to-end FPS per configuration, roofline ceiling."""
    import numpy as np

    timed = [r for r in results if r.get("fps")]
    if not timed:
        raise ValueError("no timed configurations to compare")
    labels = [_label(r, "\n") for r in timed]
    fps = np.array([r["fps"] for r in timed])
    e2e = np.array([r["e2e_fps"] for r in timed])
    # CI of the mean latency -> FPS interval (1000 / bound), as error bars around 1000/mean
    lo = np.array([1000.0 / r["latency_ms"]["ci95"][1] for r in timed])
    hi = np.array([1000.0 / r["latency_ms"]["ci95"][0] for r in timed])
    err = np.vstack([np.clip(fps - lo, 0, None), np.clip(hi - fps, 0, None)])
    ceiling = [r["roofline"]["fps_ceiling"] for r in timed]
    fig = _figure(max(5.0, 1.8 * len(timed) + 2), 4.2)
    ax = fig.subplots()
    x = np.arange(len(timed))
    ax.bar(x - 0.2, fps, 0.4, yerr=err, capsize=4, label="inference FPS (95% CI)")
    ax.bar(x + 0.2, e2e, 0.4, label="end-to-end FPS")
    has = [i for i, c in enumerate(ceiling) if c]  # None: no ceiling bounds that precision
    if has:
        ax.scatter(x[has], [ceiling[i] for i in has], marker="_", s=900, color="k", zorder=3,
                   label="roofline ceiling")
    for xi, f, up in zip(x, fps, err[1]):
        ax.annotate(f"{f:.2f}", (xi - 0.2, f + up), ha="center", va="bottom", fontsize=8)
    top = max(max(fps.max(), e2e.max()) * 1.25, 1e-3)
    if has and max(ceiling[i] for i in has) > 4 * top:  # a far-away ceiling would flatten the bars: log scale
        ax.set_yscale("log")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("frames per second")
    ax.set_title("edgeseg bench", fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, Path(path))


def write_plots(report: dict[str, Any], outdir: str | Path) -> list[Path]:
    """Every chart the report has data for, as PNGs in ``outdir``; returns their paths."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    results = _configs(report)
    written: list[Path] = []
    if any(r.get("samples_ms") for r in results):
        written.append(latency_histogram(results, out / "latency.png"))
    with_rows = [r for r in results if r.get("cio_rows")]
    seen: set[tuple[int, int]] = set()
    for r in with_rows:
        hw = (r["input_hw"][0], r["input_hw"][1])
        if hw in seen:
            continue
        seen.add(hw)
        name = "cio.png" if len(seen) == 1 else f"cio-{hw[0]}x{hw[1]}.png"
        written.append(cio_bars(r, out / name))
    if any(r.get("fps") for r in results):
        written.append(compare_chart(results, out / "compare.png"))
    return written
