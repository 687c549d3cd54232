"""Device profiles: where and how a model is profiled (runtime, accelerator, threads, transport).

Profiles are YAML files, parsed with ``safe_load`` and checked against :data:`PROFILE_SCHEMA`
(unknown keys and wrong types are :class:`UsageError` naming the key path). Built-in profiles
ship inside the package (``edgekit/devices/*.yaml``); more are read from ``./devices/*.yaml`` in
the working directory (e.g. the repository's ``devices/rpi4.yaml`` remote example) and from the
folders in ``$EDGEKIT_DEVICES`` (``os.pathsep``-separated); a later file with the same name wins.

Every profile answers :meth:`DeviceProfile.available` *before* any work, so a multi-device run
can skip what is absent here with the reason instead of failing half-way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.naming import json_key_path, load_yaml_mapping, unknown_name_error
from edgekit.errors import UsageError

BUILTIN_DIR = Path(__file__).resolve().parent
ENV_VAR = "EDGEKIT_DEVICES"
ACCELERATORS = ("cpu", "cpu-reference", "gpu", "edgetpu")

_SSH = {
    "type": "object", "additionalProperties": False, "required": ["host", "user"],
    "properties": {
        "host": {"type": "string", "minLength": 1}, "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "user": {"type": "string", "minLength": 1}, "key": {"type": "string"},
        "known_hosts": {"type": "string"}, "python": {"type": "string", "minLength": 1},
        "runtime": {"enum": ["auto", "ai_edge_litert", "tflite_runtime", "onnxruntime"]},
        "connect_timeout_s": {"type": "number", "exclusiveMinimum": 0},
        "command_timeout_s": {"type": "number", "exclusiveMinimum": 0},
    },
}

PROFILE_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["name", "accelerator"],
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"},
        "description": {"type": "string"},
        "runtime": {"enum": ["auto", "litert", "onnxruntime"]},
        "accelerator": {"enum": list(ACCELERATORS)},
        "threads": {"type": ["integer", "null"], "minimum": 1},
        "transport": {"enum": ["local", "ssh"]},
        "formats": {"type": "array", "items": {"enum": ["tflite", "onnx", "edgetpu-tflite"]}, "minItems": 1},
        "ssh": _SSH,
    },
}


@dataclass(frozen=True)
class SSHSettings:
    """How to reach a remote device; the key and known_hosts paths may use ``~``."""

    host: str
    user: str
    port: int = 22
    key: str | None = None
    known_hosts: str | None = None
    python: str = "python3"
    runtime: str = "auto"
    connect_timeout_s: float = 5.0
    command_timeout_s: float = 300.0


@dataclass(frozen=True)
class DeviceProfile:
    """One device: ``threads`` None means every core this process may use."""

    name: str
    accelerator: str
    runtime: str = "auto"
    threads: int | None = None
    transport: str = "local"
    formats: tuple[str, ...] = ("tflite", "onnx")
    description: str = ""
    ssh: SSHSettings | None = None
    source: str = ""

    def resolved_threads(self, override: int | None = None) -> int:
        """The thread count actually used: the override, else the profile's, else the usable cores."""
        if override:
            return override
        if self.threads:
            return self.threads
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    def supports(self, model_format: str) -> tuple[bool, str]:
        if model_format in self.formats:
            return True, ""
        if self.accelerator == "edgetpu":
            return False, (f"device {self.name!r} needs an Edge TPU-compiled model (edgetpu_compiler output), "
                           f"not a plain {model_format} model")
        return False, f"device {self.name!r} runs {', '.join(self.formats)} models, not {model_format}"

    def available(self, model_format: str | None = None) -> tuple[bool, str]:
        """Whether this device can run (a ``model_format`` model) here, and why (not); loads no model.

        Local devices ask the runtime (delegate libraries, GPU adapters, execution providers) first,
        so the reason names the missing piece; remote devices try an SSH connection with the
        profile's short connect timeout.
        """
        if self.transport == "ssh":
            from edgekit.devices.ssh import check_connection

            ok, reason = check_connection(self)
        else:
            from edgekit.runtime import accelerator_available

            fmt = model_format if model_format in self.formats else self.formats[0]
            ok, reason = accelerator_available(self.accelerator, fmt)
        if ok and model_format is not None:
            supported, why = self.supports(model_format)
            if not supported:
                return False, why
        return ok, reason

    def to_dict(self) -> dict[str, Any]:
        data = {"name": self.name, "description": self.description, "runtime": self.runtime,
                "accelerator": self.accelerator, "threads": self.threads, "transport": self.transport,
                "formats": list(self.formats), "source": self.source}
        if self.ssh is not None:
            data["ssh"] = dict(vars(self.ssh))
        return data


def parse_profile(text: str, *, source: str) -> DeviceProfile:
    """Parse and validate one profile; the first problem names the key path and the file."""
    data, errors = load_yaml_mapping(text, source=source, schema=PROFILE_SCHEMA, what="device profile")
    if errors:
        raise UsageError(f"{source}: {json_key_path(errors[0])}: {errors[0].message}",
                         fix="correct that key; `edgekit devices --help` describes the profile layout")
    transport = data.get("transport", "local")
    if (transport == "ssh") != ("ssh" in data):
        raise UsageError(f"{source}: transport: {transport!r} {'needs' if transport == 'ssh' else 'does not take'} an ssh block",
                         fix="set transport: ssh together with ssh: {host, user, ...}, or remove the ssh block")
    ssh = SSHSettings(**data["ssh"]) if "ssh" in data else None
    return DeviceProfile(name=data["name"], accelerator=data["accelerator"], runtime=data.get("runtime", "auto"),
                         threads=data.get("threads"), transport=transport,
                         formats=tuple(data.get("formats", ("tflite", "onnx"))),
                         description=data.get("description", ""), ssh=ssh, source=source)


def load_profile(path: Path) -> DeviceProfile:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"device profile {path} cannot be read: {exc}", fix="save it as UTF-8 YAML") from exc
    profile = parse_profile(text, source=str(path))
    if profile.name != path.stem:
        raise UsageError(f"{path}: name: {profile.name!r} differs from the file name {path.stem!r}",
                         fix=f"rename the file to {profile.name}.yaml or set name: {path.stem}")
    return profile


def profile_dirs() -> list[Path]:
    """Where profiles are read from, lowest precedence first."""
    dirs = [BUILTIN_DIR, Path.cwd() / "devices"]
    dirs += [Path(p).expanduser() for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    seen, unique = set(), []
    for folder in dirs:
        key = folder.resolve()
        if key not in seen and folder.is_dir():
            seen.add(key)
            unique.append(folder)
    return unique


def list_devices() -> list[DeviceProfile]:
    """Every known profile, sorted by name."""
    found: dict[str, DeviceProfile] = {}
    for folder in profile_dirs():
        for path in sorted(folder.glob("*.yaml")):
            profile = load_profile(path)
            found[profile.name] = profile
    return [found[name] for name in sorted(found)]


def get_device(name: str) -> DeviceProfile:
    """The profile called ``name``, or a path to a profile YAML; an unknown name suggests the closest ones."""
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return load_profile(Path(name))
    devices = {d.name: d for d in list_devices()}
    if name in devices:
        return devices[name]
    extra = ", ".join(str(folder) for folder in profile_dirs()[1:]) or "none here"
    raise unknown_name_error("device", name, devices, listing=(
        f"`edgekit devices`; more come from ./devices/*.yaml and ${ENV_VAR} folders ({extra}): run from the "
        f"repository, set {ENV_VAR}=/path/to/devices, or pass a profile .yaml path"))
