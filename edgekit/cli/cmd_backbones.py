"""`edgekit backbones`: the backbone catalog (models/*.yaml)."""

from __future__ import annotations

from edgekit.cli.app import app
from edgekit.cli.options import JsonFlag, print_listing
from edgekit.tables import Column


@app.command("backbones")
def backbones_command(as_json: JsonFlag = False) -> None:
    """List backbones: default input size, preprocessing, where the ImageNet weights come from, licence."""
    from edgekit.backbones import list_backbones

    rows = [{"name": s.name, "family": s.family, "default_size": s.default_size, "min_size": s.min_size,
             "feature_dim": s.feature_dim, "weights": s.weights_package or s.weights_source,
             "tfmot_wrap": s.tfmot_wrap, "license": s.license, "description": s.description}
            for s in list_backbones()]
    print_listing(rows, title="edgekit backbones", as_json=as_json,
                  columns=("name", "size", Column("features", optional=True), "ImageNet weights from",
                           Column("tfmot", optional=True), Column("licence", optional=True)),
                  cells=lambda row: (row["name"], f"{row['default_size']} (min {row['min_size']})",
                                     str(row["feature_dim"]), row["weights"], row["tfmot_wrap"], row["license"]))
