"""Drawing results: palette colouring, alpha blend, side-by-side, class legend and a HUD.

Everything works on uint8 BGR images with OpenCV ops (which run natively and release the GIL):
colouring is one 256-entry lookup (``cv2.applyColorMap`` with a user table, ~10x faster than
numpy fancy indexing), blending one ``cv2.addWeighted``, and the legend and HUD draw in place on
the image that is about to be shown or encoded, so a frame costs one or two full-size
allocations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["VISUALIZE", "Renderer", "blend", "check_visualize", "classes_present", "colorize",
           "draw_hud", "draw_legend", "palette_lut", "side_by_side"]

VISUALIZE = ("overlay", "mask", "side-by-side")


def palette_lut(palette: Sequence[Sequence[int]]) -> np.ndarray:
    """RGB palette -> (256, 1, 3) uint8 BGR lookup table; ids beyond it (255 = ignore) are black."""
    if len(palette) > 256:
        raise ValueError(f"a uint8 label map has at most 256 classes, got a palette of {len(palette)}")
    lut = np.zeros((256, 1, 3), np.uint8)
    if len(palette):
        lut[: len(palette), 0] = np.asarray(palette, np.uint8).reshape(-1, 3)[:, ::-1]
    return lut


def colorize(labels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Labels (H, W) uint8 -> BGR (H, W, 3) uint8 through a :func:`palette_lut` table."""
    import cv2

    return cv2.applyColorMap(np.ascontiguousarray(labels, np.uint8), lut)


def blend(bgr: np.ndarray, color: np.ndarray, alpha: float) -> np.ndarray:
    """``alpha * color + (1 - alpha) * bgr``, rounded and saturated (a new array)."""
    import cv2

    return cv2.addWeighted(color, alpha, bgr, 1.0 - alpha, 0.0)


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.hconcat([left, right])


def classes_present(labels: np.ndarray, num_classes: int, stride: int = 4) -> list[int]:
    """Class ids present (on a ``stride``-subsampled grid), largest area first."""
    counts = np.bincount(labels[::stride, ::stride].ravel(), minlength=256)[:num_classes]
    ids = np.flatnonzero(counts)
    return [int(i) for i in ids[np.argsort(-counts[ids], kind="stable")]]


def _font_scale(img: np.ndarray) -> float:
    return max(0.3, min(1.0, img.shape[0] / 1080))


def draw_legend(
    img: np.ndarray, ids: Sequence[int], classes: Sequence[str], lut: np.ndarray,
    max_items: int = 8,
) -> None:
    """Colour swatch + class name for ``ids``, in the bottom-left corner, in place."""
    import cv2

    if not ids:
        return
    scale = _font_scale(img)
    line = int(26 * scale) + 4
    rows = min(len(ids), max_items, max(0, (img.shape[0] - 4) // line))
    if rows == 0:
        return
    names = [classes[i] if i < len(classes) else str(i) for i in ids[:rows]]
    text_w = max(cv2.getTextSize(n, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for n in names)
    box_w = min(img.shape[1], line + text_w + 8)
    y0 = img.shape[0] - rows * line - 4
    img[y0:, :box_w] //= 3  # darken the panel (in place, no copy)
    for k, (i, name) in enumerate(zip(ids, names)):
        y = y0 + k * line + 2
        color = tuple(int(c) for c in lut[i, 0])
        cv2.rectangle(img, (2, y + 2), (line - 4, y + line - 4), color, -1)
        cv2.putText(img, name, (line, y + line - 6), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), 1, cv2.LINE_AA)


def draw_hud(img: np.ndarray, fps: float | None, latency_ms: float | None) -> None:
    """``12.3 FPS  45.6 ms`` in the top-left corner, in place."""
    import cv2

    parts = []
    if fps is not None:
        parts.append(f"{fps:.1f} FPS")
    if latency_ms is not None:
        parts.append(f"{latency_ms:.1f} ms")
    if not parts:
        return
    text = "  ".join(parts)
    scale = _font_scale(img) * 1.2
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    img[: h + base + 8, : w + 10] //= 3
    cv2.putText(img, text, (5, h + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                cv2.LINE_AA)


def check_visualize(mode: str, alpha: float) -> None:
    from edgeseg.errors import EdgesegError

    if mode not in VISUALIZE:
        raise EdgesegError(f"--visualize: expected one of {', '.join(VISUALIZE)}, got {mode!r}")
    if not 0.0 <= alpha <= 1.0:
        raise EdgesegError(f"--alpha: expected a value in [0, 1], got {alpha}")


class Renderer:
    """Turns a frame and its labels into the picture a sink shows or encodes.

    Args:
        classes, palette: the model's class names and RGB colours (``ModelMeta``).
        mode: ``overlay`` (alpha blend on the frame), ``mask`` (colour mask only) or
            ``side-by-side`` (frame | colour mask).
        alpha: weight of the mask colour in ``overlay``.
        legend: draw the classes present; hud: draw FPS and latency.
    """

    def __init__(
        self,
        classes: Sequence[str],
        palette: Sequence[Sequence[int]],
        mode: str = "overlay",
        alpha: float = 0.5,
        *,
        legend: bool = True,
        hud: bool = True,
    ) -> None:
        check_visualize(mode, alpha)
        self.classes = list(classes)
        self.lut = palette_lut(palette)
        self.mode, self.alpha, self.legend, self.hud = mode, alpha, legend, hud

    def __call__(
        self, bgr: np.ndarray, labels: np.ndarray, *, fps: float | None = None,
        latency_ms: float | None = None,
    ) -> np.ndarray:
        color = colorize(labels, self.lut)
        if self.mode == "overlay":
            out = blend(bgr, color, self.alpha)
        elif self.mode == "mask":
            out = color
        else:
            out = side_by_side(bgr, color)
        if self.legend:
            draw_legend(out, classes_present(labels, len(self.classes)), self.classes, self.lut)
        if self.hud:
            draw_hud(out, fps, latency_ms)
        return out
