"""`edgekit devices`: the device profiles known here and whether each can run on this machine."""

from __future__ import annotations

from edgekit.cli.app import app
from edgekit.cli.options import JsonFlag, print_listing
from edgekit.tables import Column


@app.command("devices")
def devices_command(as_json: JsonFlag = False) -> None:
    """List device profiles (built-in, ./devices/*.yaml, $EDGEKIT_DEVICES) and whether each is available here.

    Availability is checked without loading a model: delegate libraries, GPU adapters and execution
    providers for local devices; an SSH connection (short timeout) for remote ones. A profile whose formats
    differ here (gpu: .tflite on LiteRT, .onnx on onnxruntime-gpu) says "partly" and answers per format.
    """
    from edgekit.api import devices

    rows = devices()
    print_listing(rows, title="edgekit devices", as_json=as_json,
                  columns=("name", Column("runtime", optional=True), "accelerator", Column("threads", optional=True),
                           Column("transport", optional=True), "available here"),
                  cells=lambda row: (row["name"], row["runtime"], row["accelerator"], str(row["threads"] or "all cores"),
                                     row["transport"] if row["transport"] == "local"
                                     else f"ssh {row['ssh']['user']}@{row['ssh']['host']}",
                                     _answer(row) + row["reason"]))


def _answer(row: dict) -> str:
    """yes / partly (some of its formats run here) / no."""
    if not row["available"]:
        return "no: "
    return "partly: " if not all(row.get("formats_available", {}).values()) else "yes: "
