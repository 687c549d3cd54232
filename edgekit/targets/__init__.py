"""The registry of export targets: one table drives the CLI choices, option checks, `edgekit targets` and tests.

Each :class:`Target` names its file suffix, the parent formats it accepts, the options it takes
(with per-option checks), what it needs (Python modules, executables) and the module + function
that does the work. Nothing heavy is imported here: :meth:`Target.available` asks
``importlib.util.find_spec`` / ``shutil.which``, and :meth:`Target.run` imports its one module on use.
"""

from __future__ import annotations

import importlib
import inspect
import importlib.util
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.artifacts import Artifact
from edgekit.naming import unknown_name_error
from edgekit.errors import DeviceUnavailableError, UsageError
from edgekit.options import ExportOptions


@dataclass(frozen=True)
class TargetOption:
    """One option a target accepts: a field of :class:`edgekit.options.ExportOptions`, which holds its flag,
    help, type and bounds."""

    name: str

    @property
    def flag(self) -> str:
        return ExportOptions.flag(self.name)

    @property
    def help(self) -> str:
        return ExportOptions.model_fields[self.name].description

    def validate(self, value: Any) -> None:
        """The model's check of this one value (UsageError naming the flag when it is out of bounds)."""
        ExportOptions(**{self.name: value})


@dataclass(frozen=True)
class Target:
    """An export target: what it writes, what it takes and needs, and where its code lives."""

    name: str
    suffix: str
    description: str
    command: str  # the CLI command that produces it: "export" or "compile"
    inputs: tuple[str, ...]  # parent formats accepted
    module: str
    function: str
    options: tuple[TargetOption, ...] = ()
    requires: tuple[str, ...] = ()  # importable Python modules
    executables: dict[str, str] = field(default_factory=dict)  # executable -> env var that may name its path
    combination_check: Callable[[dict[str, Any]], None] | None = None
    notes: str = ""
    optional: dict[str, str] = field(default_factory=dict)  # option name -> module it additionally needs
    static_report: str | None = None  # function in ``module``: what the absent compiler would do, from the file

    def _missing_modules(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def available(self) -> tuple[bool, str]:
        """Whether this machine can produce the target, and if not, what is missing (nothing is imported)."""
        missing = self._missing_modules()
        missing += [f"{exe} (executable{f' or ${env}' if env else ''})" for exe, env in self.executables.items()
                    if shutil.which(os.environ.get(env) or exe) is None]
        if missing:
            return False, "missing " + ", ".join(missing)
        return True, "all requirements found"

    def needs(self) -> list[str]:
        return list(self.requires) + [f"{exe} (executable)" for exe in self.executables]

    def validate_options(self, given: dict[str, Any]) -> dict[str, Any]:
        """Refuse options this target does not take and values out of range; return the given options."""
        known = {option.name: option for option in self.options}
        for name, value in given.items():
            if name not in known:
                flags = ", ".join(option.flag for option in self.options) or "none"
                flag = ExportOptions.flag(name)
                raise UsageError(f"option {flag} does not apply to target {self.name!r} (its options: {flags})",
                                 fix=f"drop {flag} or choose another --target")
            known[name].validate(value)
        for name, module in self.optional.items():
            if given.get(name) and importlib.util.find_spec(module) is None:
                raise DeviceUnavailableError(f"{known[name].flag} needs the Python module {module!r}",
                                             fix=f"pip install {module}")
        if self.combination_check:
            self.combination_check(given)
        return given

    def run(self, model: Path, *, out_dir: Path, general: dict[str, Any] | None = None, **options: Any):
        """Check options and Python requirements, import the target's module, and produce the artifact.

        ``general`` holds options every export function takes (seed, trust, import_options) and is not validated
        against the target's table. Missing executables are left to the target's function, which
        says what it did instead (the Edge TPU target writes its static report).
        """
        self.validate_options(options)
        missing = self._missing_modules()
        if missing:
            raise DeviceUnavailableError(f"target {self.name!r} needs the Python module(s) {', '.join(missing)}",
                                         fix="pip install 'edgekit[full]'")
        function = getattr(importlib.import_module(self.module), self.function)
        accepted = inspect.signature(function).parameters
        general = {k: v for k, v in (general or {}).items() if k in accepted}  # e.g. no seed for a compiler
        result = function(model, out_dir=out_dir, **general, **options)
        if isinstance(result, Artifact):
            from edgekit.monitoring import write_reference_profile

            write_reference_profile(result.directory, seed=general.get("seed", 0))
        return result


def _onnx_combinations(given: dict[str, Any]) -> None:
    if given.get("int8") and given.get("dynamic"):
        raise UsageError("--int8 and --dynamic are two different quantization modes",
                         fix="pass one of them (--int8 is the fast one for CNNs)")
    for name in ("calibration", "calibrate_method", "calibration_samples"):
        if given.get(name) is not None and not given.get("int8"):
            raise UsageError(f"{ExportOptions.flag(name)} only applies with --int8 (static quantization)",
                             fix=f"add --int8 or drop {ExportOptions.flag(name)}")


ONNX_OPTIONS = tuple(TargetOption(name) for name in ("opset", "int8", "dynamic", "calibration", "calibration_samples",
                                                      "calibrate_method", "simplify"))

TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target("tflite", ".tflite", "Float32 TensorFlow Lite model (for int8 use `edgekit compress`).", "export",
               ("keras", "savedmodel"), "edgekit.targets.tflite", "export_tflite", requires=("tensorflow", "tf_keras"),
               notes="int8/pruned/clustered TFLite models come from `edgekit compress`"),
        Target("onnx", ".onnx", "ONNX model (tf2onnx), optionally int8 QDQ-quantized for onnxruntime.", "export",
               ("keras", "savedmodel", "onnx"), "edgekit.targets.onnx", "export_onnx", options=ONNX_OPTIONS,
               requires=("tensorflow", "tf2onnx", "onnx", "onnxruntime"), combination_check=_onnx_combinations,
               optional={"simplify": "onnxslim"}),
        Target("edgetpu", "_edgetpu.tflite", "Edge TPU model compiled from a full-int8 .tflite.", "compile",
               ("tflite",), "edgekit.targets.edgetpu", "compile_edgetpu",
               requires=("ai_edge_litert",), executables={"edgetpu_compiler": "EDGETPU_COMPILER"},
               static_report="compatibility_report",
               notes="without the compiler, `edgekit compile` prints the static compatibility report"),
    )
}


def get_target(name: str) -> Target:
    """The registered target called ``name``; a typo gets a "did you mean" suggestion."""
    key = name.strip().lower()
    if key in TARGETS:
        return TARGETS[key]
    raise unknown_name_error("target", name, TARGETS, listing="`edgekit targets` lists them")


def list_targets() -> list[dict[str, Any]]:
    """One row per target for `edgekit targets`: name, suffix, command, options, needs, availability."""
    rows = []
    for target in TARGETS.values():
        ok, reason = target.available()
        rows.append({"name": target.name, "suffix": target.suffix, "command": target.command,
                     "description": target.description, "inputs": list(target.inputs),
                     "options": [option.flag for option in target.options], "needs": target.needs(),
                     "available": ok, "reason": reason, "notes": target.notes})
    return rows
