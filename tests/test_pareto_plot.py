"""The Pareto plot is readable: one panel per device, every measured point labelled with its variant and
size, and no two labels overlapping (checked on matplotlib's own text extents) on the quickstart and on
the clothing-small recipe's 6 variants x 2 devices (recorded results of real runs in tests/data/reports;
clothing-small.json holds the rows of benchmarks/results/recipe_clothing_small_report.md)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from edgekit.plots import LABEL_GID, _pyplot, text_extent
from edgekit.recipes.pareto import pareto_figure, pareto_front, pick

RECORDED = Path(__file__).parent / "data" / "reports"


@pytest.mark.parametrize("name, crowded", [("quickstart", False), ("clothing-small", False),
                                           ("clothing-small", True)])
def test_pareto_labels_never_overlap_and_stay_inside_their_panel(name, crowded):
    """``crowded``: every device's points on one panel (as if measured on one device), a denser layout."""
    summary = json.loads((RECORDED / f"{name}.json").read_text())
    rows = [r for r in summary["rows"] if r.get("status") == "ok" and r.get("accuracy") is not None]
    if crowded:
        rows = [dict(r, variant=f"{r['variant']}@{r['device']}", device="all devices") for r in rows]
    reference, constraints = summary["reference_accuracy"], summary["constraints"]
    chosen = pick(rows, constraints, reference_accuracy=reference)
    fig = pareto_figure(rows, pareto_front(rows), title=name, chosen=chosen, constraints=constraints,
                        reference_accuracy=reference)
    try:
        renderer = fig.canvas.get_renderer()
        fig.canvas.draw()
        panels = [ax for ax in fig.axes if ax.get_visible()]
        devices = list(dict.fromkeys(r["device"] for r in rows))
        assert [ax.get_title() for ax in panels] == devices

        labels = [(ax, text) for ax in panels for text in ax.texts if text.get_gid() == LABEL_GID]
        boxes = [text_extent(text, renderer) for _, text in labels]
        for (ax, text), box in zip(labels, boxes):
            frame = ax.get_window_extent(renderer)
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, \
                f"label {text.get_text()!r} leaves its panel"
        for (a, box_a), (b, box_b) in itertools.combinations(zip(labels, boxes), 2):
            assert not box_a.overlaps(box_b), f"{a[1].get_text()!r} overlaps {b[1].get_text()!r}"

        floor = reference * 100 - constraints["max_accuracy_drop"] if "max_accuracy_drop" in constraints else None
        for ax, device in zip(panels, devices):  # every point named once, with its size, on its device's panel
            named = [(name, size) for a, t in labels if a is ax for line in t.get_text().split("\n")
                     for size in [line.rsplit("  ", 1)[1]] for name in line.rsplit("  ", 1)[0].strip("★ ").split(", ")]
            assert sorted(named) == sorted((r["variant"], f"{r['size_mb']:.2f} MB") for r in rows if r["device"] == device)
            if floor is not None:  # the accuracy floor is drawn on every panel
                assert any(list(line.get_ydata()) == [floor, floor] for line in ax.lines)
        assert sum("★" in t.get_text() for _, t in labels) == (chosen is not None)
    finally:
        _pyplot().close(fig)
