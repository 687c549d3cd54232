"""Recipe validation (key paths in errors, safe YAML) and the Pareto/constraint logic of sweeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.errors import RecipeError
from edgekit.recipes.pareto import pareto_front, pareto_png, pick, violations
from edgekit.recipes.schema import load_recipe, parse_recipe

REPO = Path(__file__).resolve().parents[1]
MINIMAL = "name: demo\ndata: {train: photos}\nfinetune: {backbone: mobilenet_v2}\n"


def test_minimal_recipe_is_accepted():
    assert parse_recipe(MINIMAL, source="r.yaml")["finetune"]["backbone"] == "mobilenet_v2"


@pytest.mark.parametrize("recipe_dir", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_validate(recipe_dir):
    assert load_recipe(recipe_dir)["name"]


@pytest.mark.parametrize(("text", "path_and_reason"), [
    (MINIMAL + "colour: red\n", "(top level): Additional properties are not allowed ('colour'"),
    (MINIMAL.replace("{backbone: mobilenet_v2}", "{epochs: ten}"), "finetune.epochs: 'ten' is not of type 'integer'"),
    (MINIMAL + "compress: [{name: a, int8: true}, {name: b, prune: 1.5}]\n", "compress[1].prune: 1.5 is greater"),
    (MINIMAL + "compress: [{int8: true}]\n", "compress[0]: 'name' is a required property"),
    ("name: demo\nfinetune: {}\n", "(top level): 'data' is a required property"),
    (MINIMAL + "constraints: {max_latency_ms: fast}\n", "constraints.max_latency_ms: 'fast' is not of type"),
])
def test_invalid_recipes_name_the_key_path(text, path_and_reason):
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, source="r.yaml")
    assert path_and_reason in str(err.value) and str(err.value).startswith("r.yaml: ")


def test_python_object_tags_are_refused_without_running_anything(tmp_path):
    sentinel = tmp_path / "ran"
    text = f"!!python/object/apply:os.system ['touch {sentinel}']\n"
    with pytest.raises(RecipeError, match="not valid \\(safe\\) YAML"):
        parse_recipe(text, source="evil.yaml")
    assert not sentinel.exists()


def test_duplicate_variant_names_are_refused():
    with pytest.raises(RecipeError, match="unique"):
        parse_recipe(MINIMAL + "compress: [{name: a, int8: true}, {name: a, float16: true}]\n", source="r.yaml")


def test_missing_recipe_file_says_so(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")


ROWS = [
    {"variant": "float", "device": "cpu", "accuracy": 0.90, "p50_ms": 10.0, "size_mb": 9.0},
    {"variant": "int8", "device": "cpu", "accuracy": 0.895, "p50_ms": 6.0, "size_mb": 2.5},
    {"variant": "dynamic", "device": "cpu", "accuracy": 0.89, "p50_ms": 12.0, "size_mb": 2.6},  # dominated by int8
    {"variant": "pruned", "device": "cpu", "accuracy": 0.85, "p50_ms": 6.0, "size_mb": 1.2},
    {"variant": "broken", "device": "cpu", "accuracy": None, "p50_ms": None, "size_mb": 1.0},
]


def test_pareto_front_drops_dominated_and_unmeasured_variants():
    assert {r["variant"] for r in pareto_front(ROWS)} == {"float", "int8", "pruned"}


def test_each_device_has_its_own_front():
    """The quickstart's plot drew int8 on cpu-1t grey because int8 on the 2-thread cpu beat it, though nothing
    on cpu-1t did: a row is dominated only by rows measured on its own device. The pick stays the same."""
    one_thread = [dict(r, device="cpu-1t", p50_ms=r["p50_ms"] and r["p50_ms"] * 1.8) for r in ROWS]
    rows = ROWS + one_thread
    front = pareto_front(rows)
    assert {(r["variant"], r["device"]) for r in front} == {(v, d) for v in ("float", "int8", "pruned")
                                                             for d in ("cpu", "cpu-1t")}
    assert pick(rows, {"max_accuracy_drop": 1.0}, reference_accuracy=0.90) is ROWS[1]


def test_pick_prefers_smallest_variant_within_constraints():
    assert pick(ROWS, {}, reference_accuracy=0.90)["variant"] == "pruned"
    assert pick(ROWS, {"max_accuracy_drop": 1.0}, reference_accuracy=0.90)["variant"] == "int8"
    assert pick(ROWS, {"max_latency_ms": 1.0}, reference_accuracy=0.90) is None


def test_pick_treats_sizes_and_latencies_within_noise_as_ties_and_takes_the_more_accurate():
    # recipe_clothing_small (session 29): pruned+int8 and int8, the same file size, 0.01 ms apart on one device
    pruned = {"variant": "prune50-int8", "device": "cpu-1t", "accuracy": 0.7650, "p50_ms": 1.718, "size_mb": 2.7199}
    plain = {"variant": "int8", "device": "cpu-1t", "accuracy": 0.7669, "p50_ms": 1.724, "size_mb": 2.7200}
    assert pick([pruned, plain], {}, reference_accuracy=0.77) is plain
    # a clearly smaller or clearly faster variant still wins over a more accurate one
    assert pick([pruned | {"size_mb": 2.0}, plain], {}, reference_accuracy=0.77)["variant"] == "prune50-int8"
    assert pick([pruned | {"p50_ms": 1.5}, plain], {}, reference_accuracy=0.77)["variant"] == "prune50-int8"


def test_violations_are_readable():
    broken = violations(ROWS[0], {"max_size_mb": 5, "max_latency_ms": 8}, reference_accuracy=0.9)
    assert broken == ["p50 10.00 ms > 8", "size 9.00 MB > 5"]


def test_pareto_plot_is_a_png(tmp_path):
    path = pareto_png(ROWS, pareto_front(ROWS), tmp_path / "pareto.png", title="demo", chosen=ROWS[1])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
