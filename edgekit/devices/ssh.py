"""Profiling on a remote device over SSH (paramiko): copy the model + runner script, run, bring back JSON.

Nothing of edgekit is installed on the device: the runner (``edgekit/profiling/runner.py``) needs
only numpy and ai_edge_litert / tflite_runtime (or onnxruntime). Host keys are checked against
``known_hosts`` (the profile's file, else the user's): an unknown host is refused, never added.
Every failure is a :class:`RemoteDeviceError` that says what to fix.
"""

from __future__ import annotations

import shlex
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.errors import RemoteDeviceError

if TYPE_CHECKING:
    from edgekit.devices import DeviceProfile

RUNTIME_FIX = "on the device: python3 -m pip install numpy ai-edge-litert (or tflite-runtime; onnxruntime for .onnx)"


def _target(profile: DeviceProfile) -> str:
    ssh = profile.ssh
    return f"{ssh.user}@{ssh.host}:{ssh.port}"


@contextmanager
def connect(profile: DeviceProfile):
    """An authenticated ``paramiko.SSHClient`` (key auth only, known host keys only), closed on exit."""
    try:
        import paramiko
    except ImportError as exc:
        raise RemoteDeviceError("remote devices need paramiko", fix="pip install paramiko (edgekit[full])") from exc
    ssh = profile.ssh
    where = f"device {profile.name!r} ({_target(profile)})"
    client = paramiko.SSHClient()
    known_hosts = Path(ssh.known_hosts).expanduser() if ssh.known_hosts else None
    key = str(Path(ssh.key).expanduser()) if ssh.key else None
    if key and not Path(key).is_file():
        raise RemoteDeviceError(f"{where}: SSH key {key} does not exist",
                                fix=f"create it (ssh-keygen -t ed25519 -f {ssh.key}) or fix ssh.key in {profile.source}")
    try:
        if known_hosts is not None:
            client.load_host_keys(str(known_hosts))
        else:
            client.load_system_host_keys()
    except OSError as exc:
        raise RemoteDeviceError(f"{where}: cannot read known_hosts {known_hosts}: {exc}",
                                fix=f"ssh-keyscan -p {ssh.port} {ssh.host} >> {ssh.known_hosts}") from exc
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    timeout = ssh.connect_timeout_s
    try:
        client.connect(ssh.host, port=ssh.port, username=ssh.user, key_filename=key, timeout=timeout,
                       banner_timeout=timeout, auth_timeout=timeout, allow_agent=False, look_for_keys=key is None)
    except paramiko.AuthenticationException as exc:
        client.close()
        raise RemoteDeviceError(f"{where}: authentication failed ({exc})",
                                fix=f"authorise the key on the device (ssh-copy-id -i {ssh.key or '~/.ssh/id_ed25519'} "
                                    f"-p {ssh.port} {ssh.user}@{ssh.host}) or fix ssh.key/ssh.user in {profile.source}") from exc
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise RemoteDeviceError(f"{where}: the host key does not match known_hosts (possible impersonation)",
                                fix="verify the device, then replace its line in known_hosts") from exc
    except paramiko.SSHException as exc:
        client.close()
        if "known_hosts" in str(exc) or "not found in" in str(exc):
            raise RemoteDeviceError(f"{where}: host key unknown ({exc})",
                                    fix=f"ssh-keyscan -p {ssh.port} {ssh.host} >> {ssh.known_hosts or '~/.ssh/known_hosts'} "
                                        "(after checking the fingerprint)") from exc
        raise RemoteDeviceError(f"{where}: SSH failed: {exc}", fix="check that sshd runs on the device") from exc
    except (socket.timeout, TimeoutError) as exc:
        client.close()
        raise RemoteDeviceError(f"{where}: no answer within {timeout:g} s",
                                fix=f"check the device is on and reachable, and ssh.host/ssh.port in {profile.source}") from exc
    except OSError as exc:  # refused, no route, unknown host name
        client.close()
        raise RemoteDeviceError(f"{where}: unreachable ({exc.strerror or exc})",
                                fix=f"check the device is on, sshd listens on port {ssh.port}, and ssh.host in {profile.source}") from exc
    try:
        yield client
    finally:
        client.close()


def _exec(client, command: str, timeout: float) -> tuple[int, str, str]:
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    try:
        out = stdout.read().decode("utf-8", "replace")
        err = stderr.read().decode("utf-8", "replace")
    except socket.timeout as exc:
        raise RemoteDeviceError(f"remote command timed out after {timeout:g} s: {command[:80]}",
                                fix="raise ssh.command_timeout_s or lower --runs") from exc
    return stdout.channel.recv_exit_status(), out, err


def _check_python(client, profile: DeviceProfile) -> str:
    python = profile.ssh.python
    code, out, err = _exec(client, f"{shlex.quote(python)} -c 'import sys; print(sys.version.split()[0])'",
                           profile.ssh.connect_timeout_s * 3)
    if code != 0:
        raise RemoteDeviceError(f"device {profile.name!r}: {python!r} does not run there ({(err.strip() or out.strip()).splitlines()[-1:] or code})",
                                fix=f"install Python 3 on the device or set ssh.python in {profile.source}")
    return out.strip()


def check_connection(profile: DeviceProfile) -> tuple[bool, str]:
    """Connect (short timeout) and ask the device's Python for its version: (ok, reason)."""
    try:
        with connect(profile) as client:
            version = _check_python(client, profile)
    except RemoteDeviceError as exc:
        return False, exc.one_line()
    return True, f"ssh {_target(profile)} reachable, Python {version}"


def measure_remote(profile: DeviceProfile, model: Path, *, threads: int, runs: int, warmup: int,
                   budget_s: float | None = None) -> dict:
    """Copy ``model`` and the runner to a temp folder on the device, run it there, remove the folder."""
    from edgekit.profiling.latency import RUNNER, parse_runner_output, runner_arguments

    model = Path(model)
    ssh = profile.ssh
    with connect(profile) as client:
        _check_python(client, profile)
        code, out, err = _exec(client, "mktemp -d -t edgekit-profile.XXXXXX", ssh.connect_timeout_s * 3)
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
            code, out, err = _exec(client, command, ssh.command_timeout_s)
        finally:
            _exec(client, f"rm -rf {shlex.quote(remote_dir)}", ssh.connect_timeout_s * 3)
    result = parse_runner_output(out, err, code, where=f"device {profile.name!r} ({_target(profile)})",
                                 error=RemoteDeviceError, runtime_fix=RUNTIME_FIX)
    result["transport"] = f"ssh {_target(profile)}"
    return result
