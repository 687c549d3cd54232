"""Build hook: copy the repository's top-level catalog folders into the wheel.

models/ (backbone catalog) and recipes/ (shipped recipes) stay
the source of truth at the top of the repository; a wheel carries copies under ``edgekit/_data/``,
which :mod:`edgekit.resources` reads when edgekit is installed from it. Everything else about the
build is declared in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("models", "recipes")


class BuildPyWithCatalog(build_py):
    """build_py, plus ``<folder>/*.yaml`` -> ``edgekit/_data/<folder>/`` for each shipped folder."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout directly
            return
        root = Path(__file__).resolve().parent
        for folder in SHIPPED:
            target = Path(self.build_lib) / "edgekit" / "_data" / folder
            target.mkdir(parents=True, exist_ok=True)
            for source in sorted((root / folder).glob("*.yaml")):
                shutil.copyfile(source, target / source.name)


setup(cmdclass={"build_py": BuildPyWithCatalog})
