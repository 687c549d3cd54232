"""The SSH transport to a remote device (paramiko): its settings, a checked connection, remote commands.

Host keys are checked against ``known_hosts`` (the profile's file, else the user's): an unknown host
is refused, never added. Every failure is a :class:`RemoteDeviceError` that says what to fix.
Profiling over this transport lives in :mod:`edgekit.profiling.remote`.
"""

from __future__ import annotations

import shlex
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import RemoteDeviceError


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

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


@contextmanager
def connect(ssh: SSHSettings, *, device: str, source: str):
    """An authenticated ``paramiko.SSHClient`` (key auth only, known host keys only), closed on exit.

    ``device`` and ``source`` (the profile's name and file) make the error messages say what to fix."""
    try:
        import paramiko
    except ImportError as exc:
        raise RemoteDeviceError("remote devices need paramiko", fix="pip install paramiko (edgekit[full])") from exc
    where = f"device {device!r} ({ssh.target})"
    client = paramiko.SSHClient()
    known_hosts = Path(ssh.known_hosts).expanduser() if ssh.known_hosts else None
    key = str(Path(ssh.key).expanduser()) if ssh.key else None
    if key and not Path(key).is_file():
        raise RemoteDeviceError(f"{where}: SSH key {key} does not exist",
                                fix=f"create it (ssh-keygen -t ed25519 -f {ssh.key}) or fix ssh.key in {source}")
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
                                    f"-p {ssh.port} {ssh.user}@{ssh.host}) or fix ssh.key/ssh.user in {source}") from exc
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
                                fix=f"check the device is on and reachable, and ssh.host/ssh.port in {source}") from exc
    except OSError as exc:  # refused, no route, unknown host name
        client.close()
        raise RemoteDeviceError(f"{where}: unreachable ({exc.strerror or exc})",
                                fix=f"check the device is on, sshd listens on port {ssh.port}, and ssh.host in {source}") from exc
    try:
        yield client
    finally:
        client.close()


def run_command(client, command: str, timeout: float) -> tuple[int, str, str]:
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    try:
        out = stdout.read().decode("utf-8", "replace")
        err = stderr.read().decode("utf-8", "replace")
    except socket.timeout as exc:
        raise RemoteDeviceError(f"remote command timed out after {timeout:g} s: {command[:80]}",
                                fix="raise ssh.command_timeout_s or lower --runs") from exc
    return stdout.channel.recv_exit_status(), out, err


def python_version(client, ssh: SSHSettings, *, device: str, source: str) -> str:
    """The version of the device's ``ssh.python``; RemoteDeviceError when it does not run."""
    python = ssh.python
    code, out, err = run_command(client, f"{shlex.quote(python)} -c 'import sys; print(sys.version.split()[0])'",
                                 ssh.connect_timeout_s * 3)
    if code != 0:
        raise RemoteDeviceError(f"device {device!r}: {python!r} does not run there ({(err.strip() or out.strip()).splitlines()[-1:] or code})",
                                fix=f"install Python 3 on the device or set ssh.python in {source}")
    return out.strip()


def check_connection(ssh: SSHSettings, *, device: str, source: str) -> tuple[bool, str]:
    """Connect (short timeout) and ask the device's Python for its version: (ok, reason)."""
    try:
        with connect(ssh, device=device, source=source) as client:
            version = python_version(client, ssh, device=device, source=source)
    except RemoteDeviceError as exc:
        return False, exc.one_line()
    return True, f"ssh {ssh.target} reachable, Python {version}"
