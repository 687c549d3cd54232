"""The verification verdict cached across processes by sha256 (edgekit.runtime.verified_cache): a model is
loaded in a verification subprocess once per content; a changed file, a failure, or the opt-out verify again."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_runtime import build_tiny_models

from edgekit.errors import ModelFileError
from edgekit.runtime import safety, verified_cache
from edgekit.runtime.safety import verify_tflite


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, digits_dir):
    return build_tiny_models(tmp_path_factory.getbasetemp() / "runtime-models", digits_dir)


@pytest.fixture
def verifier_runs(monkeypatch, tmp_path):
    """A fresh process's view (empty in-process cache, empty user cache) and a list of verified paths.

    The real verifier still runs; the wrapper only records each call."""
    monkeypatch.setattr(safety, "_VERIFIED", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGEKIT_NO_VERIFY_CACHE", raising=False)
    calls = []
    real = safety._run_verifier

    def recording(path, timeout):
        calls.append(path.name)
        return real(path, timeout)

    monkeypatch.setattr(safety, "_run_verifier", recording)
    return calls


def _new_process(monkeypatch):
    monkeypatch.setattr(safety, "_VERIFIED", {})


def test_a_verified_model_is_not_loaded_again_by_later_processes(tiny_models, verifier_runs, monkeypatch, tmp_path):
    model = tmp_path / "model.tflite"
    model.write_bytes(tiny_models["float"].read_bytes())
    verify_tflite(model)
    assert verifier_runs == ["model.tflite"]
    [marker] = verified_cache.cache_dir().iterdir()
    assert marker.name.startswith(safety.sha256_file(model)) and "ai_edge_litert-" in marker.name
    _new_process(monkeypatch)
    verify_tflite(model)
    assert verifier_runs == ["model.tflite"]  # remembered across processes: no second subprocess


def test_a_changed_file_is_verified_again(tiny_models, verifier_runs, monkeypatch, tmp_path):
    model = tmp_path / "model.tflite"
    model.write_bytes(tiny_models["float"].read_bytes())
    verify_tflite(model)
    _new_process(monkeypatch)
    model.write_bytes(tiny_models["int8"].read_bytes())  # same name, other content (as a swapped file would be)
    verify_tflite(model)
    assert verifier_runs == ["model.tflite", "model.tflite"]


def test_failures_are_never_remembered_across_processes(tiny_models, verifier_runs, monkeypatch, tmp_path):
    from test_model_safety import _corrupt_weights_shape

    bad = tmp_path / "malformed.tflite"
    bad.write_bytes(_corrupt_weights_shape(tiny_models["bare"].read_bytes()))
    for _ in range(2):
        _new_process(monkeypatch)
        with pytest.raises(ModelFileError, match="cannot be loaded by the TFLite interpreter"):
            verify_tflite(bad)
    assert verifier_runs == ["malformed.tflite", "malformed.tflite"]
    assert not verified_cache.cache_dir().exists() or not any(verified_cache.cache_dir().iterdir())


def test_opt_out_and_unwritable_cache_only_cost_another_verification(tiny_models, verifier_runs, monkeypatch, tmp_path):
    model = tiny_models["float"]
    monkeypatch.setenv("EDGEKIT_NO_VERIFY_CACHE", "1")
    verify_tflite(model)
    _new_process(monkeypatch)
    verify_tflite(model)
    assert verifier_runs == ["model.tflite"] * 2 and not verified_cache.cache_dir().exists()
    monkeypatch.delenv("EDGEKIT_NO_VERIFY_CACHE")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    _new_process(monkeypatch)
    verify_tflite(model)  # cannot write the marker: no error
    assert verifier_runs == ["model.tflite"] * 3


def test_predict_in_a_fresh_process_reuses_the_verdict(tiny_models, tmp_path):
    """Two real `edgekit predict` processes: the first writes the marker, the second finds it (no child process)."""
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    script = ("import sys\nfrom edgekit import child_process\nreal = child_process.run_isolated\ncalls = []\n"
              "def spy(*a, **k):\n    calls.append(a[0])\n    return real(*a, **k)\n"
              "child_process.run_isolated = spy\nfrom edgekit.cli import main\n"
              "try:\n    main(['predict', sys.argv[1], sys.argv[2], '--json'])\nexcept SystemExit as exc:\n    assert not exc.code\n"
              "print('SUBPROCESSES', len(calls))")
    photo = json.loads(tiny_models["test_images"].read_text())[0]
    runs = [subprocess.run([sys.executable, "-c", script, str(tiny_models["int8"]), photo], capture_output=True,
                           text=True, timeout=120, check=True, env={**os.environ, **env}) for _ in range(2)]
    assert [r.stdout.strip().splitlines()[-1] for r in runs] == ["SUBPROCESSES 1", "SUBPROCESSES 0"]
