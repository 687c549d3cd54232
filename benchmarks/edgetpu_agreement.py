"""Does edgekit's static Edge TPU report agree with Google's real compiler? One row per model.

Usage (no arguments needed)::

    python benchmarks/edgetpu_agreement.py [--models ../shared/models/edgetpu-compiled] [--out benchmarks/results]

The folder holds ``<name>.tflite`` and ``<name>_edgetpu.tflite`` pairs from google-coral/test_data,
compiled by ``edgetpu_compiler`` 16 (see its README). Every op outside ``edgetpu-custom-op`` in the
compiled file ran on the CPU: the static report on ``<name>.tflite`` agrees when it leaves exactly
those ops (types, counts, order) on the CPU and cuts the graph at the same op.
Writes benchmarks/results/edgetpu_agreement.{json,md}; exits 1 when a model disagrees.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from edgekit.artifacts import library_versions, write_json_atomic, write_text_atomic
from edgekit.targets.edgetpu import agreement_with_compiler

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_MODELS = Path(os.environ.get("EDGEKIT_SHARED", ROOT.parent / "shared")) / "models" / "edgetpu-compiled"


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{op} x{n}" for op, n in counts.items()) or "none"


def _markdown(rows: list[dict], folder: Path) -> str:
    agreed = sum(r["agrees"] for r in rows)
    lines = ["# Edge TPU static report vs the real compiler", "",
             f"{agreed} of {len(rows)} models agree. Ground truth: `edgetpu_compiler` 16 outputs in `{folder.name}` "
             "(google-coral/test_data); ops outside `edgetpu-custom-op` ran on the CPU. `cut` = first op (execution "
             "order) left on the CPU; `-` = the whole graph maps.", "",
             "| model | ops | CPU ops: compiler | CPU ops: report | cut: compiler | cut: report | agrees |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        cut = {k: "-" if v is None else str(v) for k, v in r["cut"].items()}
        lines.append(f"| {r['model']} | {r['ops']} | {_counts_text(r['cpu_op_counts']['compiler'])} | "
                     f"{_counts_text(r['cpu_op_counts']['report'])} | {cut['compiler']} | {cut['report']} | "
                     f"{'yes' if r['agrees'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS,
                        help="folder of <name>.tflite + <name>_edgetpu.tflite pairs")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write edgetpu_agreement.{json,md}")
    args = parser.parse_args(argv)
    sources = sorted(p for p in args.models.glob("*.tflite") if not p.stem.endswith("_edgetpu"))
    pairs = [(p, p.with_name(f"{p.stem}_edgetpu.tflite")) for p in sources]
    pairs = [(s, c) for s, c in pairs if c.is_file()]
    if not pairs:
        print(f"no <name>.tflite + <name>_edgetpu.tflite pairs in {args.models} (pass --models)", file=sys.stderr)
        return 2
    rows = []
    for source, compiled in pairs:
        started = time.perf_counter()
        row = agreement_with_compiler(source, compiled)
        rows.append({**row, "report_ms": round((time.perf_counter() - started) * 1000, 1)})
    payload = {"benchmark": "edgetpu_agreement", "models_dir": str(args.models), "machine": platform.platform(),
               "versions": library_versions("ai-edge-litert"), "agreed": sum(r["agrees"] for r in rows),
               "total": len(rows), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "edgetpu_agreement.json", payload)
    write_text_atomic(args.out / "edgetpu_agreement.md", _markdown(rows, args.models))
    print(f"{payload['agreed']}/{payload['total']} models agree; wrote {args.out / 'edgetpu_agreement.md'}")
    return 0 if payload["agreed"] == payload["total"] else 1


if __name__ == "__main__":
    sys.exit(main())
