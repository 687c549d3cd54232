"""Plots as PNG (matplotlib, headless Agg backend), written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.artifacts import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_png(confusion: list[list[int]], labels: list[str], path: Path, *, title: str) -> Path:
    """Row-normalised confusion matrix with counts in the cells."""
    plt = _pyplot()
    matrix = np.asarray(confusion, dtype=np.float64)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.55 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if len(labels) <= 30:
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                ax.text(j, i, int(count), ha="center", va="center", fontsize=8,
                        color="white" if rates[i, j] > 0.5 else "black")
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)


# Where a label may sit around its point: right first, then the other sides (dx, dy in unit steps).
_DIRECTIONS = ((1, 0), (1, 1), (1, -1), (-1, 0), (-1, 1), (-1, -1), (0, 1), (0, -1))
_GAPS_PT = (3, 10, 20, 32, 46, 62, 82, 106, 134)
LABEL_GID = "point-label"


def place_labels(ax, anchors: list[tuple[float, float]], texts: list[str], *, marker_radii_pt: list[float],
                 bold: list[bool] | None = None, fontsize: float = 7.5) -> list:
    """Annotate each anchor (data coordinates) with its text where it overlaps no other label.

    Greedy: for each label, try positions at growing distances in eight directions and keep the first
    whose box (from matplotlib's own text extents) stays inside the axes and clears the labels placed
    so far, preferring positions that also clear every marker. Distant labels get a leader line.
    The axes limits and the figure layout must be final before calling this.
    """
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    px_per_pt = fig.dpi / 72
    pixels = [ax.transData.transform(anchor) for anchor in anchors]
    markers = [Bbox.from_bounds(x - r * px_per_pt, y - r * px_per_pt, 2 * r * px_per_pt, 2 * r * px_per_pt)
               for (x, y), r in zip(pixels, marker_radii_pt)]
    placed: list = []
    annotations = []
    for i, (anchor, text) in enumerate(zip(anchors, texts)):
        label = ax.annotate(text, anchor, xytext=(0, 0), textcoords="offset points", fontsize=fontsize,
                            fontweight="bold" if bold and bold[i] else "normal", annotation_clip=False,
                            arrowprops={"arrowstyle": "-", "lw": 0.6, "color": "0.45",
                                        "shrinkA": 1, "shrinkB": marker_radii_pt[i]})
        label.set_gid(LABEL_GID)
        box = _best_position(label, renderer, frame, placed, markers, own=i, radius_pt=marker_radii_pt[i])
        label.arrow_patch.set_visible(max(abs(v) for v in label.xyann) > marker_radii_pt[i] + 12)
        placed.append(box)
        annotations.append(label)
    return annotations


def text_extent(label, renderer):
    """The box of a label's text alone (an Annotation's own extent also spans its leader line)."""
    from matplotlib.text import Text

    label.update_positions(renderer)
    return Text.get_window_extent(label, renderer)


def _best_position(label, renderer, frame, placed, markers, *, own: int, radius_pt: float):
    """Move ``label`` to the first free position (see :func:`place_labels`); returns its padded box."""
    first = None
    for clear_markers in (True, False):
        for gap in _GAPS_PT:
            for dx, dy in _DIRECTIONS:
                distance = radius_pt + gap
                label.xyann = (dx * distance, dy * distance * (0.7 if dx else 1))
                label.set_ha("left" if dx > 0 else "right" if dx < 0 else "center")
                label.set_va("bottom" if dy > 0 else "top" if dy < 0 else "center")
                box = text_extent(label, renderer).padded(2)
                first = first or (label.xyann, label.get_ha(), label.get_va(), box)
                inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
                if not inside or any(box.overlaps(other) for other in placed):
                    continue
                if clear_markers and any(box.overlaps(m) for j, m in enumerate(markers) if j != own):
                    continue
                return box
    label.xyann, ha, va, box = first  # nowhere free: the first choice (a test on the extents flags it)
    label.set_ha(ha)
    label.set_va(va)
    return box
