"""Device profiles: schema-checked safe YAML, the registry (built-in, ./devices, $EDGEKIT_DEVICES) and `edgekit devices`."""

from __future__ import annotations

import json

import pytest

from edgekit.errors import UsageError


def test_builtin_profiles_load_and_the_repository_example_is_a_valid_ssh_profile():
    from pathlib import Path

    from edgekit.devices import BUILTIN_DIR, load_profile

    assert {p.stem for p in BUILTIN_DIR.glob("*.yaml")} == {"cpu", "cpu-1t", "cpu-reference", "gpu", "edgetpu"}
    rpi4 = load_profile(Path(__file__).resolve().parents[1] / "devices" / "rpi4.yaml")
    assert rpi4.transport == "ssh" and rpi4.ssh.port == 22 and rpi4.threads == 4


def test_edgetpu_device_refuses_a_plain_tflite_model_with_the_reason():
    from edgekit.devices import get_device

    ok, reason = get_device("edgetpu").available("tflite")
    assert not ok and ("libedgetpu" in reason or "Edge TPU-compiled" in reason)


def test_device_profiles_are_schema_checked_with_the_key_path(tmp_path):
    from edgekit.devices import parse_profile

    with pytest.raises(UsageError, match=r"rpi\.yaml: ssh: Additional properties .*'prot'"):
        parse_profile("name: rpi\naccelerator: cpu\ntransport: ssh\nssh: {host: pi, user: pi, prot: 22}\n",
                      source="rpi.yaml")
    with pytest.raises(UsageError, match=r"x\.yaml: threads: 'four' is not of type"):
        parse_profile("name: x\naccelerator: cpu\nthreads: four\n", source="x.yaml")
    with pytest.raises(UsageError, match="accelerator"):
        parse_profile("name: x\naccelerator: tpu\n", source="x.yaml")
    with pytest.raises(UsageError, match="safe"):
        parse_profile("name: !!python/object/apply:os.system ['true']\naccelerator: cpu\n", source="x.yaml")
    with pytest.raises(UsageError, match="needs an ssh block"):
        parse_profile("name: x\naccelerator: cpu\ntransport: ssh\n", source="x.yaml")


def test_user_profiles_from_edgekit_devices_folder_are_listed(tmp_path, monkeypatch):
    from edgekit.devices import get_device, list_devices

    (tmp_path / "board.yaml").write_text("name: board\naccelerator: cpu\nthreads: 3\n")
    monkeypatch.setenv("EDGEKIT_DEVICES", str(tmp_path))
    assert get_device("board").resolved_threads() == 3
    assert {"cpu", "cpu-1t", "cpu-reference", "gpu", "edgetpu", "board"} <= {d.name for d in list_devices()}
    (tmp_path / "other.yaml").write_text("name: board2\naccelerator: cpu\n")
    with pytest.raises(UsageError, match="differs from the file name"):
        list_devices()


def test_devices_cli_lists_profiles_with_availability(capsys):
    from edgekit.cli.entry import main

    main(["devices", "--json"])  # returns normally on success (exits only on errors)
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert {"cpu", "cpu-1t", "cpu-reference", "gpu", "edgetpu"} <= set(rows)
    assert rows["cpu"]["available"] is True
    assert rows["edgetpu"]["available"] is False and "libedgetpu" in rows["edgetpu"]["reason"]


def test_devices_answers_per_format_where_a_profile_s_formats_differ():
    """The gpu profile runs .tflite on LiteRT's WebGPU and .onnx on onnxruntime's CUDA provider: one answer for
    both hid a GPU box with Vulkan but no onnxruntime-gpu (seen on an H200) as plainly "yes"."""
    from edgekit.api import devices
    from edgekit.runtime import accelerator_available

    row = next(row for row in devices() if row["name"] == "gpu")
    checks = {fmt: accelerator_available("gpu", fmt) for fmt in ("tflite", "onnx")}
    assert row["formats_available"] == {fmt: ok for fmt, (ok, _) in checks.items()}
    assert row["available"] is any(ok for ok, _ in checks.values())
    if checks["tflite"][1] != checks["onnx"][1] and not all(ok for ok, _ in checks.values()):
        for fmt, (ok, reason) in checks.items():
            assert f".{fmt}" in row["reason"] and reason in row["reason"], row["reason"]
    cpu = next(row for row in devices() if row["name"] == "cpu")
    assert cpu["available"] is True and cpu["reason"] == "TFLite interpreter on the CPU (XNNPACK)"
