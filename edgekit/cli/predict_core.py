"""``edgekit predict`` without Typer: its options (one table for both parsers) and what it does.

Typer 0.29 builds a pydantic validator for every option when a command is parsed, and rich tables
cost as much again: together ~0.3 s, more than the prediction itself. So the console entry point
(:mod:`edgekit.cli.entry`) parses a plain ``edgekit predict`` call with argparse from :data:`OPTIONS`
and runs :func:`run_predict` directly; anything else (``--help``, an unknown or invalid option, a
global option before the command) goes to the Typer app, which reads the same table
(:mod:`edgekit.cli.cmd_predict`) and prints the usual help and errors. Output is plain text either way.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import DataError, UsageError


@dataclass(frozen=True)
class OptionSpec:
    """One command-line option, spelled once for Typer and for the fast argparse path."""

    flags: tuple[str, ...]
    help: str
    type: type = str
    default: object = None
    minimum: int | None = None


JSON = OptionSpec(("--json",), "Print machine-readable JSON on stdout instead of tables.", bool, False)
THREADS = OptionSpec(("--threads", "-t"), "Inference threads (default: the device profile's).", int, minimum=1)
OPTIONS = {
    "top_k": OptionSpec(("--top-k", "-k"), "How many labels to show per image.", int, 5, minimum=1),
    "json_out": JSON,
    "threads": THREADS,
    "accelerator": OptionSpec(("--accelerator", "-a"), "cpu (XNNPACK) | cpu-reference (no delegates) | gpu | edgetpu.",
                              str, "cpu"),
    "labels": OptionSpec(("--labels",), "Labels file (one per line or a JSON list) for models without embedded "
                         "metadata or manifest.", Path),
    "size": OptionSpec(("--size",), "Input size in pixels, for models without metadata.", int, minimum=1),
    "mean": OptionSpec(("--mean",), "Per-channel mean, e.g. 127.5 or 123.7,116.3,103.5."),
    "std": OptionSpec(("--std",), "Per-channel std, e.g. 127.5 or 58.4,57.1,57.4."),
}


class _NotPlain(Exception):
    """The arguments need the full Typer parser (help, an error message, an option it does not know)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # never print or exit: Typer reports the problem in its own words
        raise _NotPlain(message)


def parse_plain(argv: list[str]) -> dict | None:
    """``run_predict`` keyword arguments for a plain ``predict MODEL TARGET [options]`` call, else None."""
    if not argv or argv[0] != "predict" or any(arg in ("-h", "--help") for arg in argv):
        return None
    parser = _Parser(add_help=False, allow_abbrev=False)
    parser.add_argument("model", type=Path)
    parser.add_argument("target", type=Path)
    for dest, spec in OPTIONS.items():
        if spec.type is bool:
            parser.add_argument(*spec.flags, dest=dest, action="store_true")
        else:
            parser.add_argument(*spec.flags, dest=dest, type=spec.type, default=spec.default)
    try:
        values = vars(parser.parse_args(argv[1:]))
    except (_NotPlain, ValueError):
        return None
    if any(spec.minimum is not None and values[dest] is not None and values[dest] < spec.minimum
           for dest, spec in OPTIONS.items()):
        return None
    return values


def _read_labels(path: Path) -> list[str]:
    """A labels file: a JSON list, or one label per line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --labels {path}: {exc}", fix="pass a UTF-8 text file, one label per line") from exc
    if text.lstrip().startswith("["):
        try:
            labels = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--labels {path} is not a valid JSON list: {exc}", fix="one label per line also works") from exc
    else:
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels or not all(isinstance(label, str) for label in labels):
        raise UsageError(f"--labels {path} holds no labels", fix="one label per line, in the model's output order")
    return labels


def _triple(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise UsageError(f"{option} {text!r} is not a number list", fix=f"e.g. {option} 127.5,127.5,127.5") from exc
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise UsageError(f"{option} needs 1 or 3 values, got {len(values)}", fix=f"e.g. {option} 127.5,127.5,127.5")
    return values


def _preprocessing(size: int | None, mean: str | None, std: str | None) -> dict | None:
    if size is None and mean is None and std is None:
        return None
    if size is None:
        raise UsageError("--mean/--std need --size", fix="pass --size N (the model's input height and width)")
    return {"size": [size, size], "mean": _triple(mean or "0", "--mean"), "std": _triple(std or "1", "--std")}


def run_predict(*, model: Path, target: Path, top_k: int, json_out: bool, threads: int | None, accelerator: str,
                labels: Path | None, size: int | None, mean: str | None, std: str | None) -> None:
    """Classify an image (or every image in a folder) and print a table or JSON."""
    from edgekit.runtime import Predictor

    if not target.exists():
        raise DataError(f"{target} does not exist", fix="pass an image file or a folder of images")
    predictor = Predictor(model, threads=threads, accelerator=accelerator,
                          labels=_read_labels(labels) if labels else None, preprocessing=_preprocessing(size, mean, std))
    if target.is_dir():
        results = predictor.predict_folder(target, top_k=top_k)
        if not results:
            raise DataError(f"no images found in {target}", fix="pass a folder with .jpg/.png/... files")
    else:
        ranked = predictor.predict(target, top_k=top_k)
        results = [{"path": str(target), "top_k": [{"label": l, "score": s} for l, s in ranked]}]
    if json_out:
        print(json.dumps({"model": str(predictor.path), "backend": predictor.backend,
                          "accelerator": accelerator, "results": results}, indent=2))
        return
    _print_table(results, predictor, folder=target if target.is_dir() else None)


def _print_table(results: list[dict], predictor, *, folder: Path | None) -> None:
    """Top-k of one image, or one row per image of a folder (paths relative to it; JSON has them in full)."""
    title = f"{predictor.path.name} on {predictor.backend} ({predictor.accelerator})"
    if folder is None:
        rows = [[str(rank), e["label"], f"{e['score']:.4f}"] for rank, e in enumerate(results[0]["top_k"], 1)]
        _print_plain(title, ["rank", "label", "score"], rows, right={0, 2})
        return
    rows = []
    for item in results:
        name = str(Path(item["path"]).relative_to(folder))
        if "error" in item:
            rows.append([name, "error", "", item["error"]])
            continue
        first, *rest = item["top_k"]
        rows.append([name, first["label"], f"{first['score']:.4f}",
                     ", ".join(f"{e['label']} {e['score']:.2f}" for e in rest)])
    _print_plain(title, ["image", "top-1", "score", "others"], rows, right={2})


def _print_plain(title: str, header: list[str], rows: list[list[str]], *, right: set[int], width: int = 80) -> None:
    """A plain-text table: title, header, rule, aligned columns; the last column is cut to fit ``width``."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    room = max(width - sum(widths[:-1]) - 2 * (len(widths) - 1), 10)
    widths[-1] = min(widths[-1], room)

    def line(cells: list[str]) -> str:
        cells = [*cells[:-1], cells[-1] if len(cells[-1]) <= room else cells[-1][: room - 3] + "..."]
        parts = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(cells)]
        return "  ".join(parts).rstrip()

    out = [title, line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]
    sys.stdout.write("\n".join(out) + "\n")
