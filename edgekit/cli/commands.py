"""Imports every command module so each registers itself on the Typer app (import order = help order)."""

import importlib
import pkgutil
from pathlib import Path

_ORDER = ["quickstart", "finetune", "import", "evaluate", "compress", "export", "compile", "profile", "predict",
          "monitor", "run", "targets", "devices", "backbones"]


def _register_all() -> None:
    present = {m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("cmd_")}
    for name in _ORDER:
        if f"cmd_{name}" in present:
            importlib.import_module(f"edgekit.cli.cmd_{name}")
    for name in sorted(present - {f"cmd_{n}" for n in _ORDER}):
        importlib.import_module(f"edgekit.cli.{name}")


_register_all()
