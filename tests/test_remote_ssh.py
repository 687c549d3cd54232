"""Remote (SSH) devices against a real OpenSSH server started on 127.0.0.1 by the test.

The server uses fresh host/client keys in tmp_path, key auth only. Profiling runs on "boards": bare
virtualenvs holding only what a device has (numpy + ai-edge-litert; or tflite-runtime 2.14 + numpy
1.26), built once with pip and cached under $EDGEKIT_BOARD_CACHE (default: <tmp>/edgekit-test-boards).
Error-path tests use this venv's Python. Skipped with a reason when sshd or ssh-keygen is not
installed (CI: ``apt-get install -y openssh-server openssh-client``; with EDGEKIT_CI=1 a skip fails).
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import require
from edgekit.devices import parse_profile
from edgekit.errors import RemoteDeviceError
from test_profile import tiny_models  # noqa: F401  (the real tiny .tflite fixture)

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
KEYGEN = shutil.which("ssh-keygen")
BOARD_CACHE = Path(os.environ.get("EDGEKIT_BOARD_CACHE", Path(tempfile.gettempdir()) / "edgekit-test-boards"))
# What each board's pip installs: the two runtimes a device may have (DESIGN.md: tflite-runtime 2.14
# cannot run under numpy 2). ai-edge-litert and numpy match the toolkit's pins.
BOARDS = {"litert": ("numpy==2.4.6", "ai-edge-litert==2.3.0"),
          "tflite-runtime": ("numpy==1.26.4", "tflite-runtime==2.14.0")}
BOARD_BACKEND = {"litert": "ai_edge_litert", "tflite-runtime": "tflite_runtime"}


@pytest.fixture(autouse=True)
def _openssh_installed():
    require(bool(SSHD and KEYGEN), "OpenSSH server not installed (apt-get install -y openssh-server openssh-client)")


def board_python(kind: str) -> Path:
    """The Python of a bare venv holding only BOARDS[kind] (built by pip on first use, then reused)."""
    folder = BOARD_CACHE / f"{kind}-py{sys.version_info.major}{sys.version_info.minor}"
    python = folder / "bin" / "python"
    stamp = folder / ".complete"
    if stamp.is_file() and stamp.read_text() == " ".join(BOARDS[kind]):
        return python
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, capture_output=True, timeout=300)
    done = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *BOARDS[kind]],
                          capture_output=True, text=True, timeout=900)
    require(done.returncode == 0, f"cannot build the {kind} board venv with pip: {done.stderr.strip()[-300:]}")
    stamp.write_text(" ".join(BOARDS[kind]))
    return python


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _keygen(path: Path) -> Path:
    subprocess.run([KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def start_loopback_sshd(folder: Path):
    """Start sshd on 127.0.0.1 (fresh keys in ``folder``, key auth only); returns (process, port, client key, known_hosts).

    Also used by benchmarks/profile_accuracy.py for its SSH-loopback numbers.
    """
    host_key = _keygen(folder / "host_ed25519")
    client_key = _keygen(folder / "client_ed25519")
    (folder / "authorized_keys").write_text((folder / "client_ed25519.pub").read_text())
    os.chmod(folder / "authorized_keys", 0o600)
    port = _free_port()
    host_pub = (folder / "host_ed25519.pub").read_text().split()
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    config = folder / "sshd_config"
    config.write_text(f"""ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {folder}/sshd.pid
AuthorizedKeysFile {folder}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
""")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config), "-p", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 10
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd did not start: {process.stdout.read().decode(errors='replace')[-300:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process, port, client_key, folder / "known_hosts"
        time.sleep(0.1)
    process.terminate()
    raise RuntimeError("sshd did not accept connections within 10 s")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A loopback sshd accepting only the generated client key; yields (port, key, known_hosts, folder)."""
    folder = tmp_path_factory.mktemp("sshd")
    try:
        process, port, key, known_hosts = start_loopback_sshd(folder)
    except RuntimeError as exc:
        require(False, str(exc))
    yield port, key, known_hosts, folder
    process.terminate()
    process.wait(timeout=10)


def _profile(port: int, key: Path, known_hosts: Path, *, python: str = sys.executable, threads: int = 1):
    return parse_profile(f"""
name: loopback
accelerator: cpu
threads: {threads}
transport: ssh
ssh: {{host: 127.0.0.1, port: {port}, user: {getpass.getuser()}, key: "{key}", known_hosts: "{known_hosts}",
       python: "{python}", connect_timeout_s: 3}}
""", source="loopback.yaml")


@pytest.mark.slow  # builds a bare board venv with pip on first use
def test_remote_profile_over_real_ssh_matches_the_local_result_shape(sshd, tiny_models):
    from edgekit.profiling import profile

    port, key, known_hosts, folder = sshd
    device_file = folder / "loopback.yaml"
    device_file.write_text(f"""name: loopback
accelerator: cpu
threads: 1
transport: ssh
ssh: {{host: 127.0.0.1, port: {port}, user: {getpass.getuser()}, key: "{key}", known_hosts: "{known_hosts}",
       python: "{board_python('litert')}", connect_timeout_s: 3}}
""")
    result = profile(model=tiny_models["float.tflite"], devices=("cpu-1t", str(device_file)), runs=20, warmup=2)
    local, remote = result["devices"]["cpu-1t"], result["devices"]["loopback"]
    assert remote["status"] == "ok", remote
    assert remote["transport"].startswith("ssh ")
    assert set(local["latency"]) == set(remote["latency"])
    assert set(local["memory"]) == set(remote["memory"])
    stats = remote["latency"]
    assert stats["count"] == 20 and stats["min_ms"] <= stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"]
    assert remote["memory"]["peak_delta_mib"] > 0
    assert remote["backend"] == "ai_edge_litert" and remote["threads"] == 1
    # Same model, machine, threads and runtime version run locally: the board's memory delta is the local one.
    from edgekit.runtime.latency import measure_local
    from edgekit.profiling.memory import memory_summary

    # The delta is ~25 MiB here; fresh processes on a CI machine have differed by up to 1.7 MiB (7%), so
    # the check allows 10% around the median of three local runs. Measuring a different thing (the whole
    # process, or nothing) would be off by far more.
    local_deltas = [memory_summary(measure_local(tiny_models["float.tflite"], accelerator="cpu", threads=1, runs=1,
                                                 warmup=0, backend="ai_edge_litert"),
                                   tiny_models["float.tflite"])["peak_delta_mib"] for _ in range(3)]
    local_delta = sorted(local_deltas)[1]
    assert abs(remote["memory"]["peak_delta_mib"] - local_delta) <= max(1.0, 0.1 * local_delta), \
        (remote["memory"], local_deltas)


def _board_report(python: Path) -> dict:
    """What is importable on the board: its runtime, numpy's version, and (never) TensorFlow or edgekit."""
    modules = ("tensorflow", "edgekit", "ai_edge_litert", "tflite_runtime")
    code = ("import importlib.util as u, json, numpy; print(json.dumps({'numpy': numpy.__version__, "
            f"'present': [m for m in {modules!r} if u.find_spec(m)]}}))")
    done = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


@pytest.mark.slow  # builds two bare board venvs with pip on first use (cached afterwards)
@pytest.mark.parametrize("kind", list(BOARDS))
def test_profile_on_a_bare_board_like_a_device_has(sshd, tiny_models, kind):
    """The runner is copied alone to a board that has only numpy + one TFLite runtime, and works there."""
    from edgekit.profiling import profile

    python = board_python(kind)
    board = _board_report(python)
    assert board["present"] == [BOARD_BACKEND[kind]]  # no TensorFlow, no edgekit: only the runtime
    assert board["numpy"] == BOARDS[kind][0].split("==")[1]
    port, key, known_hosts, folder = sshd
    device_file = folder / f"board-{kind}.yaml"
    device_file.write_text(f"""name: board-{kind}
accelerator: cpu
threads: 1
transport: ssh
ssh: {{host: 127.0.0.1, port: {port}, user: {getpass.getuser()}, key: "{key}", known_hosts: "{known_hosts}",
       python: "{python}", connect_timeout_s: 3}}
""")
    for model in ("float.tflite", "int8.tflite"):
        result = profile(model=tiny_models[model], devices=(str(device_file),), runs=5, warmup=1)
        row = result["devices"][f"board-{kind}"]
        assert row["status"] == "ok", (model, row)
        assert row["backend"] == BOARD_BACKEND[kind] and row["transport"].startswith("ssh ")
        assert row["latency"]["count"] == 5 and row["latency"]["p50_ms"] > 0
        assert row["memory"]["peak_delta_mib"] > 0


def test_remote_device_is_available_only_when_reachable(sshd):
    port, key, known_hosts, _ = sshd
    ok, reason = _profile(port, key, known_hosts).available("tflite")
    assert ok, reason
    assert "reachable" in reason
    ok, reason = _profile(_free_port(), key, known_hosts).available("tflite")
    assert not ok and "unreachable" in reason


def test_unreachable_port_fails_fast_with_a_fix(sshd, tiny_models):
    from edgekit.profiling.remote import measure_remote

    _, key, known_hosts, _ = sshd
    started = time.perf_counter()
    with pytest.raises(RemoteDeviceError, match="unreachable") as info:
        measure_remote(_profile(_free_port(), key, known_hosts), tiny_models["float.tflite"], threads=1, runs=1, warmup=0)
    assert time.perf_counter() - started < 5
    assert "sshd listens" in info.value.fix


def test_wrong_key_is_an_authentication_error(sshd, tmp_path, tiny_models):
    from edgekit.profiling.remote import measure_remote

    port, _, known_hosts, _ = sshd
    stranger = _keygen(tmp_path / "stranger")
    with pytest.raises(RemoteDeviceError, match="authentication failed") as info:
        measure_remote(_profile(port, stranger, known_hosts), tiny_models["float.tflite"], threads=1, runs=1, warmup=0)
    assert "ssh-copy-id" in info.value.fix


def test_unknown_host_key_is_refused_not_added(sshd, tmp_path):
    port, key, _, _ = sshd
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    ok, reason = _profile(port, key, empty).available()
    assert not ok and "host key unknown" in reason and "ssh-keyscan" in reason
    assert empty.read_text() == ""


def test_missing_python_on_the_device_names_the_setting(sshd, tiny_models):
    from edgekit.profiling.remote import measure_remote

    port, key, known_hosts, _ = sshd
    with pytest.raises(RemoteDeviceError, match="does not run there") as info:
        measure_remote(_profile(port, key, known_hosts, python="/nonexistent/python3"), tiny_models["float.tflite"],
                       threads=1, runs=1, warmup=0)
    assert "ssh.python" in info.value.fix


def test_missing_runtime_on_the_device_says_what_to_install(sshd, tmp_path, tiny_models):
    """A Python without numpy/LiteRT (the system python with -I, or -S) stands in for a bare device."""
    from edgekit.profiling.remote import measure_remote

    port, key, known_hosts, _ = sshd
    bare = tmp_path / "bare-python"
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    bare.chmod(0o755)
    with pytest.raises(RemoteDeviceError) as info:
        measure_remote(_profile(port, key, known_hosts, python=str(bare)), tiny_models["float.tflite"],
                       threads=1, runs=1, warmup=0)
    assert "pip install" in info.value.fix
