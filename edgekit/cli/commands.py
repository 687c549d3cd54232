"""Registers command modules on the Typer app: only the one being run when it is known (``edgekit predict``
then starts without importing the other commands), every one otherwise (help, typos)."""

import importlib
import pkgutil
from pathlib import Path

# The order `edgekit --help` lists commands in (the app's group sorts by it; commands not named here come last).
HELP_ORDER = ["quickstart", "finetune", "import", "evaluate", "compress", "export", "compile", "profile", "predict",
              "monitor", "run", "sweep", "recipe-schema", "targets", "devices", "backbones"]
# Commands defined in another command's module.
_MODULE_OF = {"evaluate": "finetune", "sweep": "run", "quickstart": "run", "recipe-schema": "run"}


def _present() -> set[str]:
    return {m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("cmd_")}


def register_all() -> None:
    """Import every command module."""
    for name in sorted(_present()):
        importlib.import_module(f"edgekit.cli.{name}")


def register(argv: list[str]) -> None:
    """Import the module of the command ``argv`` names (its first word that is not an option), else all."""
    words = [arg for arg in argv if not arg.startswith("-")]
    module = f"cmd_{_MODULE_OF.get(words[0], words[0])}" if words else None
    if module in _present():
        importlib.import_module(f"edgekit.cli.{module}")
    else:
        register_all()
