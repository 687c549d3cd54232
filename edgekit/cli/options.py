"""Reusable ``Annotated`` option types so every command spells shared options the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli import option_specs as specs


def typer_option(spec: specs.OptionSpec):
    """The Typer option for an option spelled (without Typer) in :mod:`edgekit.cli.option_specs`."""
    return typer.Option(*spec.flags, help=spec.help, min=spec.minimum, max=spec.maximum)


OutDir = Annotated[Path, typer.Option("--out", "-o", help="Output folder (created; existing files are replaced atomically).")]
JsonFlag = Annotated[bool, typer_option(specs.JSON)]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (recorded in the manifest; same seed, same metrics).")]
Threads = Annotated[int | None, typer_option(specs.THREADS)]


def model_argument(formats: str):
    """The MODEL argument of a command, naming the formats that command accepts (help must not offer others)."""
    return Annotated[Path, typer.Argument(metavar="MODEL", help=f"Model file ({formats}) or the artifact folder "
                                                                "holding it.")]


ModelArg = model_argument(".keras/.tflite/.onnx")
DataDir = Annotated[Path, typer.Argument(metavar="DATA", help="Image folder: one sub-folder per class.")]
Labels = Annotated[Path | None, typer_option(specs.LABELS)]
Preprocess = Annotated[str | None, typer_option(specs.PREPROCESS)]
Mean = Annotated[str | None, typer_option(specs.MEAN)]
Std = Annotated[str | None, typer_option(specs.STD)]
Size = Annotated[int | None, typer_option(specs.SIZE)]
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
