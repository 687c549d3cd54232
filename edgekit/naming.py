"""Shared checks for user-supplied names and YAML documents: one wording everywhere."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from edgekit.errors import UsageError


def unknown_name_error(kind: str, name: str, known: Iterable[str], *, listing: str) -> UsageError:
    """``unknown device 'cpu1t': did you mean 'cpu-1t'?`` plus the known names and where they are listed."""
    known = list(known)
    close = difflib.get_close_matches(str(name).strip().lower(), known, n=1, cutoff=0.5)
    hint = f": did you mean {close[0]!r}?" if close else ""
    return UsageError(f"unknown {kind} {name!r}{hint}", fix=f"known {kind}s: {', '.join(known)} ({listing})")


def json_key_path(error) -> str:
    """A jsonschema error's location as ``compress[1].prune`` (or ``(top level)``)."""
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path]
    return "".join(parts).lstrip(".") or "(top level)"


def load_yaml_mapping(text: str, *, source: str, schema: dict, what: str, error=UsageError) -> tuple[dict, list]:
    """Safe-load YAML (no Python tags), require a mapping, and return it with its schema errors (first first)."""
    import jsonschema
    import yaml

    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{source}: not valid (safe) YAML: {str(exc).splitlines()[0]}",
                    fix="fix the syntax; Python tags such as !!python/object are never allowed") from exc
    if not isinstance(data, dict):
        raise error(f"{source}: a {what} is a mapping of keys", fix=f"see the shipped {what}s for the layout")
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data),
                    key=lambda e: (len(list(e.absolute_path)), str(list(e.absolute_path))))
    return data, errors
