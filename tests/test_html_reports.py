"""The HTML reports rendered in headless Chromium: the plot and the tables render, nothing overflows a
1280-px window, and the summary (pick, constraints, plot) comes before the long table.

Inputs are recorded results of real runs (tests/data/reports: the quickstart, the clothing-small
recipe run of benchmarks/results, a profile of the quickstart's int8 model on cpu/cpu-1t/gpu with accuracy), re-rendered by
today's report writers. Screenshots are kept under runs/screenshots/ (CI artifacts).
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from conftest import WINDOW_HEIGHT, assert_fits_and_plot_renders

from edgekit.profiling.report import latency_table, write_report
from edgekit.recipes.pareto import describe_constraints, pareto_front
from edgekit.recipes.report import measured_table, reproduce_command, write_run_report

RECORDED = Path(__file__).parent / "data" / "reports"


def run_summary(name: str, out_dir: Path) -> dict:
    """A recorded run's summary, its reports written again into ``out_dir``."""
    summary = json.loads((RECORDED / f"{name}.json").read_text())
    summary.update(output=str(out_dir), wall_time_s=summary.get("wall_time_s", 0))
    summary.update(write_run_report(summary, out_dir))
    return summary


@pytest.mark.parametrize("name", ["quickstart", "clothing-small"])
def test_run_report_in_chromium_fits_1280_px_with_summary_and_plot_before_the_table(name, tmp_path, render_report):
    summary = run_summary(name, tmp_path)
    probe, dom, screenshot = render_report(Path(summary["reports"]["report_html"]), f"run-report-{name}")
    assert_fits_and_plot_renders(probe, screenshot)

    summary_box, plot = probe["summary"][0], probe["images"][0]
    table_heading = next(h for h in probe["headings"] if h["text"] == "Measurements")
    assert summary_box["top"] < plot["top"] < table_heading["top"]
    assert plot["top"] < WINDOW_HEIGHT, "the plot is not on the first screen"
    assert describe_constraints(summary["constraints"]) in dom.replace("&lt;", "<").replace("&gt;", ">")
    assert "{'max_" not in dom and '{"max_' not in dom  # constraints as words, not a Python dict

    front = pareto_front([r for r in summary["rows"] if r.get("status") == "ok" and r.get("accuracy") is not None])
    _, cells = measured_table(summary["rows"], front, summary["pick"])
    table = probe["tables"][0]
    assert table["rows"] == len(cells) + 1  # header + one row per measured variant x device
    for cell in cells:  # each measured row, whole and in order
        assert re.search("<td[^>]*>" + "</td><td[^>]*>".join(re.escape(html.escape(c)) for c in cell) + "</td>", dom), cell
    if name == "quickstart":  # the Edge TPU failure: once, not once per device
        assert dom.count("variant edgetpu: not built") == 1 and dom.count("device gpu: skipped") == 1


def test_profile_report_in_chromium_fits_1280_px_with_summary_and_histograms_first(tmp_path, render_report):
    result = json.loads((RECORDED / "profile.json").read_text())
    paths = write_report(result, tmp_path)
    probe, dom, screenshot = render_report(Path(paths["html"]), "profile-report")
    assert_fits_and_plot_renders(probe, screenshot)
    measured = [n for n, d in result["devices"].items() if d["status"] == "ok"]
    assert len(probe["images"]) == len(measured) + 2  # one histogram per device, two confusion matrices
    assert probe["summary"][0]["top"] < probe["images"][0]["top"] < probe["headings"][0]["top"]
    assert probe["images"][0]["top"] < WINDOW_HEIGHT
    _, rows = latency_table(result)
    for row in rows:
        assert re.search("<td[^>]*>" + "</td><td[^>]*>".join(re.escape(html.escape(c)) for c in row) + "</td>", dom), row
    assert "gpu: skipped:" in dom and "drop" in dom and "(+ = loss)" in dom


def test_the_reproduce_line_names_paths_from_the_folder_the_run_started_in(tmp_path, monkeypatch):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "recipes").mkdir(parents=True)
    monkeypatch.chdir(project)
    assert (reproduce_command(str(project / "recipes" / "r.yaml"), str(project / "runs" / "out"), cwd=project)
            == "edgekit run recipes/r.yaml --out runs/out")
    assert (reproduce_command(str(project / "recipes" / "r.yaml"), str(elsewhere / "out"), cwd=project)
            == f"edgekit run recipes/r.yaml --out {elsewhere / 'out'}")  # outside the folder: kept whole

    summary = run_summary("clothing-small", project / "runs" / "out")
    markdown = Path(summary["reports"]["report_md"]).read_text()
    assert "--out runs/out" in markdown and str(project) not in markdown.split("## Reproduce")[1]


def test_the_recipe_report_names_the_machine_its_numbers_were_measured_on(tmp_path):
    from edgekit.machine import machine_record

    summary = run_summary("clothing-small", tmp_path / "out")
    machine = machine_record()
    environment = Path(summary["reports"]["report_md"]).read_text().split("## Environment")[1].split("## Reproduce")[0]
    assert f"| CPU | {machine['cpu']} ({machine['cores']} cores, {machine['arch']}) |" in environment
    assert all(feature in environment for feature in machine["cpu_features"])
    assert json.loads(Path(summary["reports"]["report_json"]).read_text())["machine"] == machine
