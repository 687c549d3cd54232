"""The fast start of a plain `edgekit predict`: argparse from the same option table instead of Typer, same
output, and every unusual command line (help, errors, unknown options) still handled by Typer."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_predict_cli import photo, tiny_models  # noqa: F401  (the same session fixtures)

from edgekit.cli import main
from edgekit.cli.predict_core import OPTIONS, parse_plain

HEAVY = ("typer", "rich", "pydantic", "yaml", "jsonschema", "tensorflow", "tf_keras")


def test_plain_predict_imports_no_cli_framework_nor_tensorflow(tiny_models, photo):
    script = ("import sys, json\nfrom edgekit.cli import main\nmain(sys.argv[1:])\n"
              f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))")
    for extra in ([], ["--json", "-k", "2", "--threads", "1"]):
        proc = subprocess.run([sys.executable, "-c", script, "predict", str(tiny_models["int8"]), str(photo), *extra],
                              capture_output=True, text=True, timeout=120, check=True)
        assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("extra", [[], ["--json", "-k", "3"], ["-k", "2", "--threads", "1", "-a", "cpu"]])
def test_fast_path_prints_what_the_typer_command_prints(capsys, tiny_models, photo, extra):
    from edgekit.cli.app import run

    args = ["predict", str(tiny_models["float"]), str(photo), *extra]
    assert parse_plain(args) is not None
    main(args)
    fast = capsys.readouterr().out
    run(args)
    assert capsys.readouterr().out == fast and "model.tflite" in fast


def test_fast_path_logs_predictions_like_the_typer_command(capsys, tiny_models, photo, tmp_path):
    import sqlite3

    from edgekit.cli.app import run

    for name, runner in (("fast", main), ("typer", run)):
        log = tmp_path / f"{name}.sqlite"
        args = ["predict", str(tiny_models["float"]), str(photo), "--json", "--log", str(log), "--log-images", "1"]
        assert parse_plain(args) is not None
        runner(args)
        capsys.readouterr()
        with sqlite3.connect(log) as db:
            assert db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 1
            assert db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 1


def test_folder_table_fits_80_columns(capsys, tiny_models, photo, tmp_path):
    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.open(photo).save(tmp_path / name)
    main(["predict", str(tiny_models["float"]), str(tmp_path), "-k", "3"])
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("a.png") for line in lines) and max(map(len, lines)) <= 80


@pytest.mark.parametrize("args", [
    ["predict", "--help"], ["predict", "m.tflite", "x.jpg", "-h"], ["predict", "m.tflite"],
    ["predict", "m.tflite", "x.jpg", "--bogus"], ["predict", "m.tflite", "x.jpg", "-k", "0"],
    ["predict", "m.tflite", "x.jpg", "-k", "many"], ["predict", "m.tflite", "x.jpg", "--top"],
    ["--debug", "predict", "m.tflite", "x.jpg"], ["profile", "m.tflite"], [],
    ["predict", "m.tflite", "x.jpg", "--log", "l.sqlite", "--log-images", "2"],
    ["predict", "m.tflite", "x.jpg", "--log-max-mb", "0.01"], ["predict", "m.tflite", "x.jpg", "--log-images", "nan"],
])
def test_unusual_command_lines_go_to_typer(args):
    assert parse_plain(args) is None


def test_typer_errors_and_exit_codes_are_unchanged(capsys, tiny_models, photo):
    for args, code, text in ((["-k", "0"], 2, "--top-k"), (["--bogus"], 2, "No such option")):
        with pytest.raises(SystemExit) as exc:
            main(["predict", str(tiny_models["float"]), str(photo), *args])
        assert exc.value.code == code and text in capsys.readouterr().err


def test_typer_command_and_fast_parser_share_one_option_table():
    import typer.main

    from edgekit.cli import commands
    from edgekit.cli.app import app

    commands.register(["predict"])
    command = typer.main.get_command(app).commands["predict"]
    typer_flags = {tuple(p.opts + p.secondary_opts) for p in command.params if p.param_type_name == "option"}
    assert typer_flags == {spec.flags for spec in OPTIONS.values()}
