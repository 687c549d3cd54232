"""Edge TPU compatibility of .tflite models: JSON + Markdown into benchmarks/results/.

With no arguments (``make bench``): the int8 MobileNetV2 finetuned on clothing-small (built by the
benchmarks, see _common.py) and every Coral model in ``../shared/models/edgetpu-compiled``, where the
real compiler's output beside each one is the ground truth (the CPU ops and the cut, compared as
edgetpu_agreement.py does). Or pass models::

    python benchmarks/edgetpu_report.py mobilenet_v2=runs/mnv2/int8/model.tflite [--out benchmarks/results]

Each argument is ``label=path`` (or a bare path, labelled by its file name). Only the static
report runs here, so no compiler is needed; ``compile_edgetpu`` records the real compiler's
numbers in the manifest where it is installed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from edgekit.artifacts import write_json_atomic, write_text_atomic
from edgekit.errors import EdgekitError
from edgekit.targets.edgetpu import agreement_with_compiler, compatibility_report, format_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CLOTHING, SHARED, clothing_tflite_pair  # noqa: E402
from harness import environment, finish, relative  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CORAL = SHARED / "models" / "edgetpu-compiled"


def default_models() -> list[tuple[str, Path]]:
    """The benchmarks' own int8 clothing-small model and the shared Coral models (those present)."""
    models = [("mobilenet_v2 clothing-small int8", clothing_tflite_pair(224)["int8"])] if (CLOTHING / "train").is_dir() else []
    return models + [(path.stem, path) for path in sorted(CORAL.glob("*.tflite")) if not path.stem.endswith("_edgetpu")]


def compiler_agreement(path: Path) -> dict | None:
    """The static report against the real Edge TPU compiler's output beside ``path`` (see edgetpu_agreement.py)."""
    compiled = path.with_name(f"{path.stem}_edgetpu.tflite")
    return agreement_with_compiler(path, compiled) if compiled.is_file() else None


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
    truth = compiler_agreement(path)
    where = relative(path)
    return {"label": label, "report_ms": round(elapsed_ms, 1), **report.to_dict(), "path": where, "model": where,
            "summary_lines": [line.replace(str(path), where) for line in report.summary_lines()],
            "compiler_cpu_ops": None if truth is None else truth["cpu_op_counts"]["compiler"],
            "agrees_with_compiler": None if truth is None else truth["agrees"]}


def _markdown(rows: list[dict], failures: list[dict]) -> str:
    lines = ["# Edge TPU static compatibility", "",
             "Static check of the .tflite flatbuffer against Coral's supported-operations table (no compiler run).",
             "", "| model | ops | Edge TPU | CPU | first CPU op | params on-chip | off-chip | fully int8 | "
             "CPU ops = real compiler's | issues |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cut = "-" if r["cut_index"] is None else f"{r['cut_index']} ({r['ops'][r['cut_index']]['op']})"
        lines.append(f"| {r['label']} | {len(r['ops'])} | {r['edgetpu_ops']} | {r['cpu_ops']} | {cut} | "
                     f"{format_bytes(r['on_chip_bytes'])} | {format_bytes(r['off_chip_bytes'])} | "
                     f"{'yes' if r['fully_int8'] else 'no'} | {_agreement(r)} | {'; '.join(r['issues']) or '-'} |")
    for r in rows:
        lines += ["", f"## {r['label']}", "", f"`{r['path']}` ({r['size_bytes']} bytes, report in {r['report_ms']} ms)",
                  "", "```", *r["summary_lines"], "```"]
    for f in failures:
        lines += ["", f"## {f['label']}: not readable", "", f"`{f['path']}`: {f['error']}"]
    return "\n".join(lines) + "\n"


def _agreement(row: dict) -> str:
    if row["agrees_with_compiler"] is None:
        return "no compiled file"
    return "yes" if row["agrees_with_compiler"] else f"NO (compiler: {row['compiler_cpu_ops']})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="label=path/to/model.tflite (or just the path); "
                        "default: the clothing-small int8 model and the shared Coral models")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    rows, failures = [], []
    setting = environment()
    for label, path in _parse_model_args(args.models) if args.models else default_models():
        try:
            rows.append(_row(label, path))
        except EdgekitError as exc:
            failures.append({"label": label, "path": str(path), "error": exc.one_line()})
    payload = {"benchmark": "edgetpu_report", "environment": finish(setting), "models": rows, "failures": failures}
    write_json_atomic(args.out / "edgetpu_report.json", payload)
    write_text_atomic(args.out / "edgetpu_report.md", _markdown(rows, failures))
    print(f"wrote {args.out / 'edgetpu_report.json'} and edgetpu_report.md ({len(rows)} models, {len(failures)} failed)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
