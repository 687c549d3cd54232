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
import shutil
import sys
from pathlib import Path

from edgekit.cli import option_specs as specs
from edgekit.cli.option_specs import OptionSpec
from edgekit.errors import DataError, UsageError
from edgekit.runtime.predlog import DEFAULT_MAX_MB

OPTIONS = {
    "top_k": OptionSpec(("--top-k", "-k"), "How many labels to show per image.", int, 5, minimum=1),
    "json_out": specs.JSON,
    "threads": specs.THREADS,
    "accelerator": OptionSpec(("--accelerator", "-a"), "cpu (XNNPACK) | cpu-reference (no delegates) | gpu | edgetpu.",
                              str, "cpu"),
    "labels": specs.LABELS,
    "preprocess": specs.PREPROCESS,
    "size": specs.SIZE,
    "mean": specs.MEAN,
    "std": specs.STD,
    "log": OptionSpec(("--log",), "Append one row per prediction to this SQLite log (for `edgekit monitor`).", Path),
    "log_images": OptionSpec(("--log-images",), "Share of inputs (0..1) kept in the log as a JPEG at the model's "
                             "size, for later labelling.", float, 0.0, minimum=0.0, maximum=1.0),
    "log_max_mb": OptionSpec(("--log-max-mb",), "Size bound of the log; the oldest rows rotate out beyond it.", float,
                             DEFAULT_MAX_MB, minimum=0.05),
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
    if any(values[dest] is not None and not _in_range(values[dest], spec) for dest, spec in OPTIONS.items()):
        return None
    return values


def _in_range(value, spec: OptionSpec) -> bool:
    return ((spec.minimum is None or value >= spec.minimum) and (spec.maximum is None or value <= spec.maximum)
            and value == value)  # NaN is out of every range


def preprocessing_option(size: int | None, preprocess: str | None, mean: str | None, std: str | None) -> dict | None:
    """--preprocess/--mean/--std (and --size) as a Predictor preprocessing dict; the size defaults to the model's."""
    if size is None and preprocess is None and mean is None and std is None:
        return None  # the usual case: everything comes from the model's metadata (and no importer import)
    from edgekit.importer import normalisation, parse_channels

    chosen = normalisation(preprocess, parse_channels(mean, "--mean") if mean else None,
                           parse_channels(std, "--std") if std else None)
    if size is not None:
        chosen = {**(chosen or {}), "size": [size, size]}
    return chosen


def run_predict(*, model: Path, target: Path, top_k: int, json_out: bool, threads: int | None, accelerator: str,
                labels: Path | None, preprocess: str | None, size: int | None, mean: str | None, std: str | None,
                log: Path | None, log_images: float, log_max_mb: float) -> None:
    """Classify an image (or every image in a folder) and print a table or JSON."""
    from edgekit.runtime import Predictor

    if not target.exists():
        raise DataError(f"{target} does not exist", fix="pass an image file or a folder of images")
    if log is None and (log_images or log_max_mb != DEFAULT_MAX_MB):
        raise UsageError("--log-images/--log-max-mb need --log", fix="pass --log PATH (a SQLite file)")
    label_names = None
    if labels:
        from edgekit.importer import read_labels

        label_names = read_labels(labels)
    predictor = Predictor(model, threads=threads, accelerator=accelerator, labels=label_names,
                          preprocessing=preprocessing_option(size, preprocess, mean, std))
    if log:  # only once the model loaded: a model that fails leaves no empty log behind
        from edgekit.runtime.predlog import PredictionLog

        predictor.start_log(PredictionLog(log, sample_images=log_images, max_mb=log_max_mb))
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
    """Top-k of one image, or one row per image of a folder (paths relative to it; JSON has them in full) with
    each unreadable file on its own line below."""
    title = f"{predictor.path.name} on {predictor.backend} ({predictor.accelerator})"
    width = shutil.get_terminal_size().columns  # $COLUMNS, else the terminal, else 80 (as edgekit.tables)
    if folder is None:
        rows = [[str(rank), e["label"], f"{e['score']:.4f}"] for rank, e in enumerate(results[0]["top_k"], 1)]
        _print_plain(title, ["rank", "label", "score"], rows, right={0, 2}, width=width)
        return
    rows, errors = [], []
    for item in results:
        if "error" in item:
            errors.append(_cut(f"{item['path']}: error: {' '.join(item['error'].split())}", width))
            continue
        first, *rest = item["top_k"]
        rows.append([str(Path(item["path"]).relative_to(folder)), first["label"], f"{first['score']:.4f}",
                     ", ".join(f"{e['label']} {e['score']:.2f}" for e in rest)])
    _print_plain(title, ["image", "top-1", "score", "next"], rows, right={2}, width=width)
    sys.stdout.write("".join(f"{line}\n" for line in errors))


def _cut(text: str, room: int) -> str:
    """``text`` cut with an ellipsis to ``room`` characters (as edgekit.tables cuts a note at the terminal edge)."""
    return text if len(text) <= room else text[: room - 1] + "…"


def _print_plain(title: str, header: list[str], rows: list[list[str]], *, right: set[int], width: int) -> None:
    """A plain-text table (edgekit.tables without rich, whose import costs as much as a prediction): title,
    header, rule, aligned columns; the last column is cut to fit ``width``."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    room = max(width - sum(widths[:-1]) - 2 * (len(widths) - 1), 10)
    widths[-1] = min(widths[-1], room)

    def line(cells: list[str]) -> str:
        parts = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                 for i, cell in enumerate([*cells[:-1], _cut(cells[-1], room)])]
        return "  ".join(parts).rstrip()

    out = [_cut(title, width), line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]
    sys.stdout.write("\n".join(out) + "\n")
