"""The recipe schema (JSON Schema, draft 2020-12) and the safe loader that checks recipes against it.

A recipe is one YAML file describing the whole pipeline. Unknown keys, wrong types and missing
fields are errors that name the key path (``compress[1].prune: 1.5 is greater than ...``). YAML
is parsed with ``safe_load``: tags such as ``!!python/object`` are refused, never constructed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.errors import RecipeError

_NUMBER = {"type": "number"}
_POSITIVE_INT = {"type": "integer", "minimum": 1}

FINETUNE = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "backbone": {"type": "string"}, "weights": {"type": ["string", "null"]},
        "input_size": {"type": "integer", "minimum": 32, "maximum": 1024}, "alpha": {"type": "number", "exclusiveMinimum": 0},
        "epochs": _POSITIVE_INT, "batch_size": _POSITIVE_INT, "learning_rate": {"type": "number", "exclusiveMinimum": 0},
        "dropout": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        "label_smoothing": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        "augment": {"type": "boolean"}, "augment_copies": {"type": "integer", "minimum": 0},
        "balance_classes": {"type": "boolean"}, "early_stopping": {"type": "integer", "minimum": 0},
        "fine_tune_layers": {"type": "integer", "minimum": 0}, "fine_tune_epochs": {"type": "integer", "minimum": 0},
        "fine_tune_learning_rate": {"type": "number", "exclusiveMinimum": 0},
        "validation_fraction": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
    },
}

VARIANT = {
    "type": "object", "additionalProperties": False, "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"},
        "int8": {"type": "boolean"}, "float16": {"type": "boolean"}, "dynamic": {"type": "boolean"},
        "int16x8": {"type": "boolean"}, "io_dtype": {"enum": ["float32", "int8", "uint8"]},
        "prune": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "cluster": {"type": "integer", "minimum": 2}, "qat": {"type": "boolean"},
        "max_accuracy_drop": {"type": "number", "minimum": 0},
        "calibration_samples": _POSITIVE_INT, "fine_tune_epochs": {"type": "integer", "minimum": 0},
    },
}

EXPORT = {
    "type": "object", "additionalProperties": False, "required": ["name", "target"],
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"},
        "target": {"type": "string"},
        "source": {"type": "string", "description": "'float' or the name of a compress variant"},
        "options": {"type": "object"},
    },
}

RECIPE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object", "additionalProperties": False,
    "required": ["name", "data", "finetune"],
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"},
        "description": {"type": "string"},
        "seed": {"type": "integer", "minimum": 0},
        "output": {"type": "string"},
        "data": {
            # A string is one folder; object keywords below apply to the mapping form only.
            "type": ["string", "object"], "additionalProperties": False, "required": ["train"],
            "description": "one folder (DATA/<class>/ images, or DATA/train + DATA/val + DATA/test, as "
                           "`edgekit finetune` takes), or the keys below; paths are relative to the recipe",
            "properties": {
                "train": {"type": "string", "description": "training images: DATA/<class>/, a folder holding "
                                                           "train/ (+ val/ + test/), or 'embedded:digits'"},
                "val": {"type": "string", "description": "validation images (default: val/ beside train/, else "
                                                         "a seeded split of train)"},
                "test": {"type": "string", "description": "held-out images for accuracy (default: test/ beside "
                                                          "train/)"},
                "calibration": {"type": "string", "description": "int8 calibration images (default: train)"},
            },
        },
        "finetune": FINETUNE,
        "distribute": {"enum": ["none", "mirrored", "multi_worker_mirrored"]},
        "compress": {"type": "array", "items": VARIANT,
                     "description": "TFLite variants; options as in `edgekit compress --help`"},
        "export": {"type": "array", "items": EXPORT, "description": "targets as in `edgekit targets`"},
        "devices": {"type": "array", "items": {"type": "string"},
                    "description": "device profiles to measure on (`edgekit devices`; default cpu)"},
        "profile": {
            "type": "object", "additionalProperties": False,
            "properties": {"runs": _POSITIVE_INT, "warmup": {"type": "integer", "minimum": 0},
                           "threads": _POSITIVE_INT, "max_eval_images": _POSITIVE_INT},
        },
        "constraints": {
            "type": "object", "additionalProperties": False,
            "description": "what the pick must meet (drop in top-1 points vs the float model)",
            "properties": {"max_accuracy_drop": _NUMBER, "max_latency_ms": _NUMBER, "max_size_mb": _NUMBER},
        },
    },
}


def _type_text(spec: dict) -> str:
    """``integer >= 1``, ``one of none, mirrored`` or ``string | mapping`` for one schema node."""
    if "enum" in spec:
        return "one of " + ", ".join(map(str, spec["enum"]))
    kinds = spec.get("type", "mapping")
    text = " | ".join(k if k != "object" else "mapping" for k in ([kinds] if isinstance(kinds, str) else kinds))
    if text == "array":
        text = "list of " + _type_text(spec.get("items", {})) + "s"
    bounds = [(">=", "minimum"), (">", "exclusiveMinimum"), ("<=", "maximum"), ("<", "exclusiveMaximum")]
    return " ".join([text] + [f"{sign} {spec[key]}" for sign, key in bounds if key in spec])


def recipe_layout(schema: dict | None = None, indent: str = "") -> str:
    """The recipe's keys as an indented outline (type, required, description), generated from the schema."""
    import textwrap

    schema = RECIPE_SCHEMA if schema is None else schema
    lines = []
    required = set(schema.get("required", []))
    for key, spec in schema.get("properties", {}).items():
        text = f"{key}: {_type_text(spec)}" + (" (required)" if key in required else "")
        if spec.get("description"):
            text += f": {spec['description']}"
        lines += textwrap.wrap(text, 80, initial_indent=indent, subsequent_indent=indent.replace("-", " ") + "    ")
        child = spec.get("items", spec)
        if "properties" in child:
            lines.append(recipe_layout(child, indent + ("  - " if "items" in spec else "  ")).replace(
                "\n" + indent + "  - ", "\n" + indent + "    "))
    return "\n".join(lines)


def parse_recipe(text: str, *, source: str) -> dict[str, Any]:
    """Parse YAML safely and validate it; the first error names the key path."""
    from edgekit.naming import json_key_path, load_yaml_mapping

    data, errors = load_yaml_mapping(text, source=source, schema=RECIPE_SCHEMA, what="recipe", error=RecipeError)
    if errors:
        error = errors[0]
        extra = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise RecipeError(f"{source}: {json_key_path(error)}: {error.message}{extra}",
                          fix="correct that key; `edgekit recipe-schema` prints the recipe layout")
    names = [v["name"] for v in data.get("compress", [])] + [e["name"] for e in data.get("export", [])]
    duplicates = sorted({n for n in names if names.count(n) > 1} | ({"float"} & set(names)))
    if duplicates:
        raise RecipeError(f"{source}: variant/export names must be unique and not 'float': {', '.join(duplicates)}",
                          fix="rename the duplicates")
    return data


def load_recipe(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path} does not exist", fix="pass a YAML file, e.g. recipes/quickstart.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise RecipeError(f"recipe {path} cannot be read: {exc}", fix="save it as UTF-8 text") from exc
    return parse_recipe(text, source=str(path))
