"""Profiling on a remote device over SSH: copy the model + runner script, run, bring back JSON.

Nothing of edgekit is installed on the device: the runner (``edgekit/runtime/runner.py``) needs
only numpy and ai_edge_litert / tflite_runtime (or onnxruntime). The connection itself (host keys,
timeouts, errors) is :mod:`edgekit.devices.ssh`.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from edgekit.devices import DeviceProfile
from edgekit.devices.ssh import connect, python_version, run_command
from edgekit.errors import RemoteDeviceError

RUNTIME_FIX = "on the device: python3 -m pip install numpy ai-edge-litert (or tflite-runtime; onnxruntime for .onnx)"


def measure_remote(profile: DeviceProfile, model: Path, *, threads: int, runs: int, warmup: int,
                   budget_s: float | None = None) -> dict:
    """Copy ``model`` and the runner to a temp folder on the device, run it there, remove the folder."""
    from edgekit.runtime.latency import RUNNER, parse_runner_output, runner_arguments

    model = Path(model)
    ssh = profile.ssh
    named = {"device": profile.name, "source": profile.source}
    with connect(ssh, **named) as client:
        python_version(client, ssh, **named)
        code, out, err = run_command(client, "mktemp -d -t edgekit-profile.XXXXXX", ssh.connect_timeout_s * 3)
        remote_dir = out.strip()
        if code != 0 or not remote_dir.startswith("/"):
            raise RemoteDeviceError(f"device {profile.name!r}: cannot create a temp folder ({err.strip()})",
                                    fix="free space in /tmp on the device")
        try:
            sftp = client.open_sftp()
            try:
                sftp.put(str(RUNNER), f"{remote_dir}/runner.py")
                sftp.put(str(model), f"{remote_dir}/{model.name}")
            finally:
                sftp.close()
            backend = "auto" if ssh.runtime == "auto" else ssh.runtime
            args = runner_arguments(f"{remote_dir}/{model.name}", backend=backend, accelerator=profile.accelerator,
                                    threads=threads, runs=runs, warmup=warmup, budget_s=budget_s)
            command = " ".join(shlex.quote(part) for part in [ssh.python, f"{remote_dir}/runner.py", *args])
            code, out, err = run_command(client, command, ssh.command_timeout_s)
        finally:
            run_command(client, f"rm -rf {shlex.quote(remote_dir)}", ssh.connect_timeout_s * 3)
    result = parse_runner_output(out, err, code, where=f"device {profile.name!r} ({ssh.target})",
                                 error=RemoteDeviceError, runtime_fix=RUNTIME_FIX)
    result["transport"] = f"ssh {ssh.target}"
    return result
