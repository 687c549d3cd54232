"""Reusable ``Annotated`` option types so every command spells shared options the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

OutDir = Annotated[Path, typer.Option("--out", "-o", help="Output folder (created; existing files are replaced atomically).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout instead of tables.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (recorded in the manifest; same seed, same metrics).")]
Threads = Annotated[int | None, typer.Option("--threads", "-t", min=1, help="Inference threads (default: the device profile's).")]


def model_argument(formats: str):
    """The MODEL argument of a command, naming the formats that command accepts (help must not offer others)."""
    return Annotated[Path, typer.Argument(metavar="MODEL", help=f"Model file ({formats}) or the artifact folder "
                                                                "holding it.")]


ModelArg = model_argument(".keras/.tflite/.onnx")
DataDir = Annotated[Path, typer.Argument(metavar="DATA", help="Image folder: one sub-folder per class.")]
# What a model without an edgekit manifest cannot say about itself (see `edgekit import --help`).
Labels = Annotated[Path | None, typer.Option("--labels", help="Labels file (one per line, or a JSON list) in the "
                                             "model's output order, for a model without edgekit metadata "
                                             "(default: class_0..N-1).")]
Preprocess = Annotated[str | None, typer.Option("--preprocess", help="Input normalisation of a model without edgekit "
                                                "metadata: torch (ImageNet mean/std), tf ([-1, 1]), 0-1 (x/255) or "
                                                "raw (0..255).")]
Mean = Annotated[str | None, typer.Option("--mean", help="Per-channel mean on 0..255 pixels instead of --preprocess, "
                                          "e.g. 127.5 or 123.7,116.3,103.5.")]
Std = Annotated[str | None, typer.Option("--std", help="Per-channel std instead of --preprocess, e.g. 127.5 or "
                                         "58.4,57.1,57.4.")]
Size = Annotated[int | None, typer.Option("--size", min=1, help="Input size in pixels, only for models whose input "
                                          "size is dynamic (otherwise read from the model).")]
TrustModel = Annotated[bool, typer.Option("--trust-model", help="Allow Keras models with Lambda/custom layers "
                                          "(runs their code).")]


def print_listing(rows: list[dict], *, title: str, columns: tuple, cells, as_json: bool) -> None:
    """The listing commands' output: ``rows`` as JSON, or a table of ``cells(row)`` under ``columns``
    (names, or :class:`~edgekit.tables.Column` for optional ones left out of a narrow terminal)."""
    if as_json:
        import json

        typer.echo(json.dumps(rows, indent=2))
        return
    from edgekit.tables import Column, print_table

    print_table(title, [c if isinstance(c, Column) else Column(c) for c in columns], [list(cells(row)) for row in rows])


def import_options(*, labels: Path | None, preprocess: str | None, mean: str | None, std: str | None,
                   size: int | None = None, trust: bool = False, train_data: Path | None = None,
                   eval_data: Path | None = None):
    """The shared foreign-model options as :class:`edgekit.importer.ImportOptions` (mean/std parsed)."""
    from edgekit.importer import ImportOptions, parse_channels

    return ImportOptions(labels=labels, preprocess=preprocess, mean=parse_channels(mean, "--mean") if mean else None,
                         std=parse_channels(std, "--std") if std else None, size=size, trust=trust,
                         train_data=train_data, eval_data=eval_data)


def stage_option(model, name: str, *short: str, typer_range: bool = False):
    """A ``typer.Option`` whose flag, default and help are read from field ``name`` of a stage's option model
    (:mod:`edgekit.options`), so the command cannot drift from the stage and the recipe schema.

    ``typer_range`` also hands the field's inclusive bounds (``ge``/``le``) to Typer, which then checks them
    while parsing and shows them in ``--help``; without it the model checks them with its own message.
    """
    field = model.model_fields[name]
    bounds = {key: getattr(m, key) for m in field.metadata for key in ("ge", "le") if hasattr(m, key)}
    limits = {"min": bounds.get("ge"), "max": bounds.get("le")} if typer_range else {}
    return typer.Option(field.default, model.FLAGS.get(name, "--" + name.replace("_", "-")), *short,
                        help=field.description, **limits)
