"""Terminal tables of compress, profile, run and sweep at COLUMNS=80 and 120: every line fits, every number
is printed whole on its row's line, and a failed variant or unavailable device is one line, once.

Inputs are recorded results of real runs (tests/data/reports); `edgekit predict` is covered the same
way, end to end, in test_predict_cli.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekit.cli.cmd_compress import print_compress_table
from edgekit.cli.cmd_profile import _print_tables as print_profile
from edgekit.cli.cmd_run import print_summary

RECORDED = Path(__file__).parent / "data" / "reports"
WIDTHS = (80, 120)


def printed(capsys, monkeypatch, width: int, show, *args, **kwargs) -> list[str]:
    monkeypatch.setenv("COLUMNS", str(width))
    show(*args, **kwargs)
    lines = capsys.readouterr().out.splitlines()
    too_long = [line for line in lines if len(line.rstrip()) > width]
    assert not too_long, f"lines wider than {width}: {too_long}"
    return lines


def _numbers(line: str) -> list[float]:
    numbers = []
    for word in line.split():
        try:
            numbers.append(float(word))
        except ValueError:
            pass
    return numbers


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= max(abs(b) * 0.006, 0.006)


def row_line(lines: list[str], words: list[str], values: list[float], extra: list[float] = ()) -> str:
    """The line whose first words are ``words``, holding every value whole (as printed, rounded) and no
    number that is not one of ``values`` or ``extra`` (the optional columns): a number cut at the edge fails."""
    for line in lines:
        tokens = [t for t in line.split() if t not in ("★", "◆", "★◆")]
        if tokens[:len(words)] != words:
            continue
        numbers = _numbers(line)
        if all(any(_close(n, v) for n in numbers) for v in values):
            assert "…" not in line, line
            strays = [n for n in numbers if not any(_close(n, v) for v in [*values, *extra])]
            assert not strays, f"numbers cut or unknown {strays} in: {line}"
            return line
    raise AssertionError(f"no line holds {words} with {values} whole:\n" + "\n".join(lines))


def recorded(name: str) -> dict:
    return json.loads((RECORDED / f"{name}.json").read_text())


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", ["quickstart", "clothing-small"])
def test_run_and_sweep_tables_fit_with_whole_numbers_and_failures_once(name, width, capsys, monkeypatch):
    summary = recorded(name)
    lines = printed(capsys, monkeypatch, width, print_summary, summary, as_json=False)
    header = "\n".join(lines[:4])
    assert "size" in header and "MB" in header and "p50" in header and "ms" in header and "(+ = loss)" in header
    for row in summary["rows"]:
        if row["status"] == "ok":
            line = row_line(lines, [row["variant"], row["device"]],
                            [row["size_mb"], row["p50_ms"], row["accuracy"] * 100, row["accuracy_drop_pts"]],
                            [row["gzip_mb"], row["top1_agreement"] * 100, row["peak_memory_mib"]])
            assert ("★" in line) == (row == summary["pick"]) and ("◆" in line) == row["pareto"], line
    failed = {r["variant"] for r in summary["rows"] if r["status"].startswith("failed: ") and "size_mb" not in r}
    for variant in failed:  # once, not once per device
        assert sum(line.startswith(f"  variant {variant}: not built: ") for line in lines) == 1
    unavailable = {r["device"] for r in summary["rows"] if r["status"].startswith("skipped: ")}
    for device in unavailable:
        assert sum(line.startswith(f"  device {device}: skipped for every variant: ") for line in lines) == 1
    assert f"float top-1 {summary['reference_accuracy'] * 100:.2f} %" in lines[0]


@pytest.mark.parametrize("width", WIDTHS)
def test_profile_table_fits_with_whole_numbers_and_skipped_devices_once(width, capsys, monkeypatch):
    result = recorded("profile")
    lines = printed(capsys, monkeypatch, width, print_profile, result)
    for name, device in result["devices"].items():
        if device["status"] == "ok":
            lat = device["latency"]
            row_line(lines, [name], [device["init_ms"], device["first_inference_ms"], lat["p50_ms"], lat["p90_ms"],
                                     lat["p99_ms"], device["memory"]["peak_delta_mib"]],
                     [device["threads"], lat["min_ms"], lat["mean_ms"], lat["std_ms"], device["memory"]["peak_rss_mib"]])
        else:
            assert sum(line.startswith(f"{name}: skipped:") for line in lines) == 1
    accuracy = result["accuracy"]
    assert f"drop {accuracy['accuracy_drop']:+.2f} pts (+ = loss)" in " ".join(" ".join(lines).split())


@pytest.mark.parametrize("width", WIDTHS)
def test_compress_table_fits_with_whole_numbers(width, capsys, monkeypatch):
    rows = recorded("compress")
    lines = printed(capsys, monkeypatch, width, print_compress_table, "compress runs/quickstart/float", rows)
    assert "(+ = loss)" in "\n".join(lines[:4])
    for row in rows:
        row_line(lines, [row["variant"]], [row["size_bytes"] / 1e6, row["size_vs_float32_tflite"], row["gzip_bytes"] / 1e6,
                                           row["top1_agreement"] * 100, row["top1_drop_points"]],
                 [row["gzip_vs_float32_tflite_gzip"], row["float32_tflite_bytes"] / 1e6])
