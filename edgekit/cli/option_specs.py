"""Options shared by several commands, spelled once without Typer.

:mod:`edgekit.cli.options` turns them into Typer options; :mod:`edgekit.cli.predict_core` parses a plain
``edgekit predict`` with argparse from the same specs, so the fast path and ``--help`` never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OptionSpec:
    """One command-line option: its flags, help, value type, default and allowed range."""

    flags: tuple[str, ...]
    help: str
    type: type = str
    default: object = None
    minimum: float | None = None
    maximum: float | None = None


JSON = OptionSpec(("--json",), "Print machine-readable JSON on stdout instead of tables.", bool, False)
THREADS = OptionSpec(("--threads", "-t"), "Inference threads (default: the device profile's).", int, minimum=1)
# What a model without an edgekit manifest cannot say about itself (see `edgekit import --help`).
LABELS = OptionSpec(("--labels",), "Labels file (one per line, or a JSON list) in the model's output order, for a "
                    "model without edgekit metadata (default: class_0..N-1).", Path)
PREPROCESS = OptionSpec(("--preprocess",), "Input normalisation of a model without edgekit metadata: torch (ImageNet "
                        "mean/std), tf ([-1, 1]), 0-1 (x/255) or raw (0..255).")
MEAN = OptionSpec(("--mean",), "Per-channel mean on 0..255 pixels instead of --preprocess, e.g. 127.5 or "
                  "123.7,116.3,103.5.")
STD = OptionSpec(("--std",), "Per-channel std instead of --preprocess, e.g. 127.5 or 58.4,57.1,57.4.")
SIZE = OptionSpec(("--size",), "Input size in pixels, only for models whose input size is dynamic (otherwise read "
                  "from the model).", int, minimum=1)
