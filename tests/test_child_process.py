"""The one child-process helper: results come back, crashes/timeouts/failures become EdgekitErrors, children are
reused inside ``reusing_children()`` (and replaced after a crash), and the spawned child behaves when started from
the CLI (guarded ``__main__``, no TensorFlow in the safety check)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgekit.child_process import reusing_children, run_isolated
from edgekit.errors import ConversionError, ManifestError

ROOT = Path(__file__).resolve().parents[1]


def test_the_child_returns_its_result_and_sees_the_given_environment():
    assert run_isolated(functools.partial(int, base=16), "ff", what="parsing", fix="none") == 255
    assert run_isolated(os.getenv, "EDGEKIT_CHILD_TEST", what="reading", fix="none",
                        env={"EDGEKIT_CHILD_TEST": "set in the child"}) == "set in the child"
    assert "EDGEKIT_CHILD_TEST" not in os.environ


def test_a_crashed_child_is_an_error_naming_what_crashed_the_signal_and_the_fix():
    with pytest.raises(ConversionError, match=r"^converting m.keras crashed \(Aborted\)") as info:
        run_isolated(os.abort, what="converting m.keras", fix="retry with --debug")
    assert info.value.fix == "retry with --debug"
    with pytest.raises(ConversionError, match=r"converting m.keras crashed \(exit 3\)"):
        run_isolated(os._exit, 3, what="converting m.keras", fix="retry")


def test_an_exception_in_the_child_comes_back_as_the_error_or_as_itself():
    with pytest.raises(ManifestError, match="failed: ValueError: invalid literal"):
        run_isolated(int, "zz", what="parsing", fix="pass a number", error=ManifestError)
    with pytest.raises(ManifestError, match="a manifest problem") as info:
        run_isolated(_raise_manifest_error, what="x", fix="y")
    assert type(info.value) is ManifestError and "fix the manifest" in str(info.value)


def _raise_manifest_error():
    raise ManifestError("a manifest problem", fix="fix the manifest")


def test_a_child_past_its_timeout_is_killed_and_reported():
    started = time.monotonic()
    with pytest.raises(ConversionError, match="sleeping did not finish within 2 s"):
        run_isolated(time.sleep, 60, what="sleeping", fix="be quicker", timeout=2)
    assert time.monotonic() - started < 20


def _child_pid(**env: str) -> int:
    return run_isolated(os.getpid, what="asking the child's pid", fix="none", env=env)


def test_reusing_children_keeps_one_child_per_environment_and_stops_them_at_the_end():
    alone = {_child_pid(), _child_pid()}
    assert len(alone) == 2 and os.getpid() not in alone  # outside the block: a fresh child per call
    with reusing_children():
        first = _child_pid()
        assert _child_pid() == first
        other = _child_pid(EDGEKIT_CHILD_TEST="1")
        assert other != first  # another environment: its own child (env is set before the child's imports)
        with pytest.raises(ManifestError, match="invalid literal"):
            run_isolated(int, "zz", what="parsing", fix="pass a number", error=ManifestError)
        assert _child_pid() == first  # an ordinary exception leaves the child sound: kept
        with reusing_children():  # nested: the outer block's children
            assert _child_pid() == first
        assert _child_pid(EDGEKIT_CHILD_TEST="1") == other
    for pid in (first, other):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # stopped and reaped when the block ended


def test_a_crash_or_timeout_in_a_reused_child_is_the_error_and_the_next_call_gets_a_fresh_child():
    with reusing_children():
        first = _child_pid()
        run_isolated(os.write, 1, b"chatter of an earlier call\n", what="writing", fix="none")
        with pytest.raises(ConversionError, match=r"^converting m.keras crashed \(exit 3\)") as info:
            run_isolated(os._exit, 3, what="converting m.keras", fix="retry")
        assert "earlier call" not in str(info.value)  # the log quoted is this call's, not the shared child's
        second = _child_pid()
        assert second != first
        with pytest.raises(ConversionError, match=r"converting m.keras crashed \(Aborted\)"):
            run_isolated(os.abort, what="converting m.keras", fix="retry with --debug")
        with pytest.raises(ConversionError, match="sleeping did not finish within 2 s"):
            run_isolated(time.sleep, 60, what="sleeping", fix="be quicker", timeout=2)
        third = _child_pid()
        assert third not in (first, second)
        assert _child_pid() == third


def test_a_plain_script_without_a_main_guard_is_not_rerun_in_the_child(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text("import functools\nfrom edgekit.child_process import run_isolated\n"
                      "print('script ran')\n"
                      "print(run_isolated(functools.partial(int, base=16), 'ff', what='parsing', fix='none'))\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["script ran", "255"]
    assert "bootstrapping phase" not in done.stderr


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, digits_dir) -> dict[str, Path]:
    from test_runtime import build_tiny_models

    return build_tiny_models(tmp_path_factory.getbasetemp() / "runtime-models", digits_dir)


def _launchers() -> list:
    script = Path(sys.executable).parent / "edgekit"
    return [pytest.param([sys.executable, "-m", "edgekit"], id="python -m edgekit"),
            pytest.param([sys.executable, str(script)], id="edgekit script",
                         marks=pytest.mark.skipif(not script.is_file(), reason=f"no console script at {script}"))]


@pytest.mark.parametrize("launcher", _launchers())
def test_cli_predict_verifies_the_model_in_a_child_without_tensorflow(launcher, tiny_models, tmp_path):
    """The verification child of ``edgekit predict`` must not import TensorFlow (a stand-in ``tensorflow``
    package records any import), nor run the CLI again (spawn would re-run the ``edgekit`` script)."""
    from test_runtime import LABELS

    from edgekit.runtime.tflite_file import with_metadata_buffer

    models = tiny_models
    # a never-seen model (fresh bytes, so no verification verdict is cached for it anywhere)
    model = tmp_path / "fresh.tflite"
    model.write_bytes(with_metadata_buffer(models["float"].read_bytes(), "nonce", os.urandom(16)))
    photo = Path(json.loads(models["test_images"].read_text())[0])
    poison = tmp_path / "poison" / "tensorflow"
    poison.mkdir(parents=True)
    marker = tmp_path / "tensorflow-imported"
    (poison / "__init__.py").write_text(f"import os\nopen({str(marker)!r}, 'a').write(str(os.getpid()) + '\\n')\n"
                                        "raise ImportError('tensorflow must not be imported here')\n")
    done = subprocess.run([*launcher, "predict", str(model), str(photo), "--json"],
                          capture_output=True, text=True, timeout=300,
                          env=os.environ | {"PYTHONPATH": f"{poison.parent}{os.pathsep}{ROOT}"})
    assert done.returncode == 0, done.stderr
    assert not marker.exists(), f"processes that imported tensorflow: {marker.read_text()}"
    [result] = json.loads(done.stdout)["results"]  # one JSON document: the child did not rerun the CLI
    assert result["top_k"][0]["label"] in LABELS
