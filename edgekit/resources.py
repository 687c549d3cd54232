"""Where the shipped YAML folders live: inside an installed wheel, or at the top of a checkout.

The repository's top-level models/ (backbone catalog) and recipes/ are the source of
truth. A wheel carries copies in ``edgekit/_data/<name>/`` (written by the build hook in setup.py);
an editable install or a plain checkout reads the top-level folders directly.
"""

from __future__ import annotations

from pathlib import Path

PACKAGED = Path(__file__).resolve().parent / "_data"
CHECKOUT = Path(__file__).resolve().parents[1]


def shipped_dir(name: str) -> Path:
    """``models`` or ``recipes``: the packaged copy when present, else the checkout's folder."""
    packaged = PACKAGED / name
    return packaged if packaged.is_dir() else CHECKOUT / name
