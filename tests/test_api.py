"""edgekit.api: explicit keyword-only signatures, one call per stage with its real signature, and the
option models (edgekit/options.py) that the API, the CLI and the recipe schema must not drift from."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from edgekit import api
from edgekit.errors import DeviceUnavailableError, UsageError
from edgekit.options import CompressOptions, ExportOptions, FinetuneOptions, ProfileOptions

STAGE_FUNCTIONS = [api.finetune, api.evaluate, api.import_model, api.compress, api.export, api.compile_model,
                   api.static_report, api.profile, api.compare, api.monitor, api.run_recipe]


@pytest.mark.parametrize("function", STAGE_FUNCTIONS, ids=lambda f: f.__name__)
def test_stage_functions_take_explicit_keywords_only(function):
    parameters = inspect.signature(function).parameters.values()
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters)


def test_api_source_has_no_catch_all_options():
    source = Path(api.__file__).read_text()
    assert "**options" not in source and "**kwargs" not in source


@pytest.mark.parametrize(("function", "model", "left_out"), [
    (api.compress, CompressOptions, ()),
    (api.export, ExportOptions, ()),
    (api.profile, ProfileOptions, ("rounds",)),
    (api.compare, ProfileOptions, ()),
])
def test_api_defaults_are_the_option_models_defaults(function, model, left_out):
    parameters = inspect.signature(function).parameters
    for name, field in model.model_fields.items():
        if name in left_out:
            continue
        assert name in parameters, f"api.{function.__name__} lacks option {name}"
        assert parameters[name].default == field.default, f"api.{function.__name__}({name}=...) default drifted"


def test_stage_compress_defaults_are_the_models():
    from edgekit.stages.compress import compress

    parameters = inspect.signature(compress).parameters
    assert {name: parameters[name].default for name in CompressOptions.model_fields} == \
        {name: field.default for name, field in CompressOptions.model_fields.items()}


# --- the CLI commands read flag, default, help (and for profile the range) from the models -------------------
def _click_command(name: str):
    import typer.main

    from edgekit.cli import commands
    from edgekit.cli.app import app

    commands.register_all()
    return typer.main.get_command(app).commands[name]


def _bounds(field) -> dict:
    return {key: getattr(m, key) for m in field.metadata for key in ("ge", "gt", "le", "lt") if hasattr(m, key)}


@pytest.mark.parametrize(("command", "model", "left_out"), [
    ("finetune", FinetuneOptions, ()), ("compress", CompressOptions, ()), ("export", ExportOptions, ()),
    ("profile", ProfileOptions, ()),
])
def test_every_model_field_is_a_cli_option_with_the_models_default_and_help(command, model, left_out):
    params = {opt: param for param in _click_command(command).params for opt in param.opts}
    for name, field in model.model_fields.items():
        flag = model.flag(name)
        assert flag in params, f"`edgekit {command}` lacks {flag}"
        param = params[flag]
        assert param.default == field.default and param.help == field.description
        low, high = param.min, param.max
        if low is not None or high is not None:  # a Typer range must be the model's
            assert (low, high) == (_bounds(field).get("ge"), _bounds(field).get("le"))


# --- the recipe schema is generated from the same models -------------------------------------------------
@pytest.mark.parametrize(("section", "model", "left_out"), [
    ("finetune", FinetuneOptions, ("seed",)), ("compress", CompressOptions, ("seed",)),
    ("export", ExportOptions, ()), ("profile", ProfileOptions, ("budget_s", "rounds")),
])
def test_recipe_schema_has_every_option_with_the_models_bounds(section, model, left_out):
    from edgekit.recipes.schema import RECIPE_SCHEMA

    node = RECIPE_SCHEMA["properties"][section]
    node = node.get("items", node)
    properties = node["properties"]["options"]["properties"] if section == "export" else node["properties"]
    keys = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
    for name, field in model.model_fields.items():
        if name in left_out:
            assert name not in properties
            continue
        assert {keys[k]: v for k, v in _bounds(field).items()} == \
            {k: v for k, v in properties[name].items() if k in keys.values()}, f"{section}.{name} bounds drifted"


def test_cluster_above_256_is_refused_by_the_recipe_the_api_and_the_cli(tmp_path, capsys):
    from edgekit.cli import main
    from edgekit.errors import RecipeError
    from edgekit.recipes.schema import parse_recipe

    recipe = "name: r\ndata: {train: photos}\nfinetune: {}\ncompress: [{name: c, cluster: 300}]\n"
    with pytest.raises(RecipeError, match=r"compress\[0\].cluster: 300 is greater than the maximum of 256"):
        parse_recipe(recipe, source="r.yaml")
    with pytest.raises(UsageError, match=r"--cluster 300: must be in 2\.\.256"):
        api.compress(model=tmp_path / "m.keras", out_dir=tmp_path / "out", cluster=300)
    with pytest.raises(SystemExit) as exit_info:
        main(["compress", str(tmp_path / "m.keras"), "--cluster", "300", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        "error: --cluster 300: must be in 2..256 (fix: use e.g. --cluster 16)"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("model", "values", "words"), [
    (FinetuneOptions, {"dropout": 1.0}, "--dropout 1.0: must be in [0, 1)"),
    (FinetuneOptions, {"learning_rate": 0}, "--lr 0: must be > 0"),
    (FinetuneOptions, {"fine_tune_layers": 3}, "go together"),
    (CompressOptions, {"io_dtype": "float16"}, "--io-dtype 'float16': must be 'float32', 'int8' or 'uint8'"),
    (CompressOptions, {"colour": 1}, "option --colour does not apply to `edgekit compress`"),
    (ExportOptions, {"opset": 30}, "--opset 30: must be in 13..18"),
    (ProfileOptions, {"runs": 0}, "--runs 0: must be >= 1"),
])
def test_bad_values_are_one_line_usage_errors_naming_the_flag(model, values, words):
    with pytest.raises(UsageError) as error:
        model(**values)
    assert words in str(error.value) and "(fix: " in str(error.value) and "\n" not in str(error.value)
    assert error.value.exit_code == 2


def test_export_refuses_options_and_targets_that_do_not_apply_before_any_work(tmp_path):
    with pytest.raises(UsageError, match="--opset does not apply to target 'tflite'"):
        api.export(model=tmp_path / "m.keras", target="tflite", out_dir=tmp_path / "x", opset=13)
    with pytest.raises(UsageError, match="produced by `edgekit compile`"):
        api.export(model=tmp_path / "m.keras", target="edgetpu", out_dir=tmp_path / "x")
    with pytest.raises(UsageError, match="produced by `edgekit export`"):
        api.compile_model(model=tmp_path / "m.tflite", target="onnx", out_dir=tmp_path / "x")
    assert not (tmp_path / "x").exists()


# --- every stage through the API with its real signature (tiny models on the embedded digits; slow on a
# shared 2-core machine: 1-4 min each) ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def float_model(tmp_path_factory, digits_dir):
    from edgekit.stages.finetune import FinetuneConfig

    result = api.finetune(data=digits_dir / "train", out_dir=tmp_path_factory.mktemp("api") / "float",
                          config=FinetuneConfig(backbone="mobilenet_v2", input_size=32, epochs=3, augment_copies=0, early_stopping=0, seed=1))
    return result.artifact


@pytest.mark.slow
def test_finetune_records_the_config_it_was_given(float_model):
    assert float_model.manifest.seed == 1 and float_model.manifest.options["epochs"] == 3


@pytest.mark.slow
def test_export_takes_a_seed_for_every_target(float_model, tmp_path):
    artifact = api.export(model=float_model.path, target="tflite", out_dir=tmp_path / "tflite", seed=1)
    assert artifact.manifest.format == "tflite" and artifact.manifest.seed == 1
    assert artifact.manifest.metrics["validation"]["max_abs_diff"] < 1e-4


@pytest.mark.slow
def test_compress_profile_compare_and_compile_through_the_api(float_model, digits_dir, tmp_path):
    variants = api.compress(model=float_model.path, out_dir=tmp_path / "c", int8=True, float16=True,
                            calibration=digits_dir / "train", calibration_samples=50, seed=2)
    by_name = {artifact.directory.name: artifact for artifact in variants}
    assert sorted(by_name) == ["float16", "int8"] and by_name["int8"].manifest.options["seed"] == 2
    profiled = api.profile(model=by_name["int8"].path, devices=["cpu-1t"], runs=3, warmup=0,
                           fail_if=["p50_ms>100000"])
    assert profiled["devices"]["cpu-1t"]["status"] == "ok" and not profiled["gates"][0]["failed"]
    api.enforce_gates(profiled)
    compared = api.compare(models=[by_name["float16"].path, by_name["int8"].path], devices=["cpu-1t"], runs=2,
                           warmup=0, rounds=1)
    assert [row["model"] for row in compared["models"]] == [str(by_name["float16"].path), str(by_name["int8"].path)]
    report = api.static_report(model=by_name["int8"].path)
    if report is None:  # the Edge TPU compiler is installed here
        return
    assert report.ops and report.to_dict()["ops"]
    with pytest.raises(DeviceUnavailableError, match="compiler is not installed"):
        api.compile_model(model=by_name["int8"].path, out_dir=tmp_path / "tpu")
    assert (tmp_path / "tpu" / "edgetpu_report.json").is_file()


def test_run_recipe_measures_on_the_devices_given(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ndata: {train: embedded:digits/train}\nfinetune: {}\ndevices: [cpu]\n")
    with pytest.raises(UsageError, match="cpu-1tt"):  # the devices argument replaces the recipe's, before any work
        api.run_recipe(recipe=recipe, out_dir=tmp_path / "out", devices=["cpu-1tt"])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("listing", ["targets", "backbones", "recipe-schema"])
def test_listing_commands_print_what_the_api_returns(listing, capsys):
    import json

    from edgekit.cli import main

    main([listing, "--json"])
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(getattr(api, listing.replace("-", "_"))()))


def test_the_sweeps_standard_variants_are_valid_recipe_entries_and_options():
    import yaml

    from edgekit.recipes.pipeline import STANDARD_EXPORTS, STANDARD_VARIANTS
    from edgekit.recipes.schema import parse_recipe

    recipe = {"name": "s", "data": "photos", "finetune": {}, "compress": [dict(v) for v in STANDARD_VARIANTS],
              "export": [dict(e) for e in STANDARD_EXPORTS]}
    assert parse_recipe(yaml.safe_dump(recipe), source="sweep")["compress"]
    for variant in STANDARD_VARIANTS:
        assert CompressOptions(**{k: v for k, v in variant.items() if k != "name"}).modes()
