"""Edge TPU compatibility of given .tflite models: JSON + Markdown into benchmarks/results/.

Usage::

    python benchmarks/edgetpu_report.py mobilenet_v2=runs/mnv2/int8/model.tflite \
        efficientnet_lite0=runs/effl0/int8/model.tflite [--out benchmarks/results]

Each argument is ``label=path`` (or a bare path, labelled by its file name). Only the static
report runs here, so no compiler is needed; ``compile_edgetpu`` records the real compiler's
numbers in the manifest where it is installed.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

from edgekit.artifacts import library_versions, write_json_atomic, write_text_atomic
from edgekit.errors import EdgekitError
from edgekit.targets.edgetpu import compatibility_report, format_bytes

RESULTS = Path(__file__).resolve().parent / "results"


def _parse_model_args(items: list[str]) -> list[tuple[str, Path]]:
    models = []
    for item in items:
        label, _, path = item.rpartition("=") if "=" in item else ("", "", item)
        models.append((label or Path(path).stem, Path(path)))
    return models


def _row(label: str, path: Path) -> dict:
    started = time.perf_counter()
    report = compatibility_report(path)
    elapsed_ms = (time.perf_counter() - started) * 1000
    return {"label": label, "path": str(path), "report_ms": round(elapsed_ms, 1), **report.to_dict(),
            "summary_lines": report.summary_lines()}


def _markdown(rows: list[dict], failures: list[dict]) -> str:
    lines = ["# Edge TPU static compatibility", "",
             "Static check of the .tflite flatbuffer against Coral's supported-operations table (no compiler run).",
             "", "| model | ops | Edge TPU | CPU | first CPU op | params on-chip | off-chip | fully int8 | issues |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cut = "-" if r["cut_index"] is None else f"{r['cut_index']} ({r['ops'][r['cut_index']]['op']})"
        lines.append(f"| {r['label']} | {len(r['ops'])} | {r['edgetpu_ops']} | {r['cpu_ops']} | {cut} | "
                     f"{format_bytes(r['on_chip_bytes'])} | {format_bytes(r['off_chip_bytes'])} | "
                     f"{'yes' if r['fully_int8'] else 'no'} | {'; '.join(r['issues']) or '-'} |")
    for r in rows:
        lines += ["", f"## {r['label']}", "", f"`{r['path']}` ({r['size_bytes']} bytes, report in {r['report_ms']} ms)",
                  "", "```", *r["summary_lines"], "```"]
    for f in failures:
        lines += ["", f"## {f['label']}: not readable", "", f"`{f['path']}`: {f['error']}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="label=path/to/model.tflite (or just the path)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    rows, failures = [], []
    for label, path in _parse_model_args(args.models):
        try:
            rows.append(_row(label, path))
        except EdgekitError as exc:
            failures.append({"label": label, "path": str(path), "error": exc.one_line()})
    payload = {"benchmark": "edgetpu_report", "machine": platform.platform(), "versions": library_versions("ai-edge-litert"),
               "models": rows, "failures": failures}
    write_json_atomic(args.out / "edgetpu_report.json", payload)
    write_text_atomic(args.out / "edgetpu_report.md", _markdown(rows, failures))
    print(f"wrote {args.out / 'edgetpu_report.json'} and edgetpu_report.md ({len(rows)} models, {len(failures)} failed)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
