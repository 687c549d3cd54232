"""`edgekit targets`: every export target, what it needs, and whether this machine can produce it."""

from __future__ import annotations

from edgekit.cli.app import app
from edgekit.cli.options import JsonFlag, print_listing
from edgekit.tables import Column


@app.command("targets")
def targets_command(as_json: JsonFlag = False) -> None:
    """List export targets: file suffix, command, options, requirements and availability here (and why not)."""
    from edgekit.targets import list_targets

    rows = list_targets()
    print_listing(rows, title="edgekit targets", as_json=as_json,
                  columns=("target", Column("suffix", optional=True), "command", Column("options", optional=True),
                           Column("needs", optional=True), "available here"),
                  cells=lambda row: (row["name"], row["suffix"], f"edgekit {row['command']}",
                                     " ".join(row["options"]) or "-", ", ".join(row["needs"]),
                                     "yes" if row["available"] else f"no: {row['reason']}"))
