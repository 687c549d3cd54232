"""One typed option model per stage: the single place each option's type, default, bounds and help live.

The stages validate with these models (pydantic), the recipe JSON schema is generated from them
(:func:`recipe_properties`), and the CLI commands take their defaults and help from them
(:func:`edgekit.cli.options.stage_option`). A bad value becomes the project's one-line
:class:`~edgekit.errors.UsageError` naming the CLI flag and a fix, not a pydantic traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, DirectoryPath, Field, ValidationError, model_validator

from edgekit.errors import UsageError

IO_DTYPES = ("float32", "int8", "uint8")
MIN_CALIBRATION_IMAGES = 10
MAX_CLUSTERS = 256  # TFLite/tfmot clustering keeps at most 256 shared values per kernel
CALIBRATE_METHODS = ("minmax", "entropy", "percentile")
PRUNE_TARGETS = ("size", "latency")
ACTIVATION_RANGES = ("minmax", "percentile", "mse")  # edgekit.targets.activation_ranges.ESTIMATORS
# Post-training int8's activation ranges: percentile took MobileNetV2's int8 drop from +1.93 to +0.00 points (224 px)
# and +2.17 to +0.33 (160), n=2,440, and left EfficientNet-Lite0 within noise (benchmarks/results/int8_loss_sources.md).
DEFAULT_ACTIVATION_RANGES = "percentile"
WEIGHT_ROUNDING = ("nearest", "adaround")  # how post-training int8 rounds weights (edgekit.stages.weight_rounding)
DEFAULT_WEIGHT_ROUNDING = "nearest"
# XNNPACK runs a 1x1 convolution sparse only when at least this share of its weights is zero (its README).
MIN_SPARSE_ZERO_FRACTION = 2 / 3
# Fine-tune epochs of --prune/--cluster/--qat when none are given: 2 for size pruning, clustering and QAT. Latency
# pruning prunes 70% of every 1x1 convolution and needs longer: MobileNetV2 224 px on the 2,440 clothing-small
# test/extra photos lost +3.6 points at 4 epochs, -0.1/+0.1/+1.2 at 8 and -0.9/-1.2/+0.5 at 12 (seeds 0/1/2, upper
# bounds +0.6/+0.4/+2.1; benchmarks/results/sparse_refit_ablation_e8*.md, _e12*.md): 12 is the first count every
# seed keeps within 1 point, at 1.5x 8's fine-tune.
DEFAULT_FINE_TUNE_EPOCHS = 2
LATENCY_PRUNE_FINE_TUNE_EPOCHS = 12
MIN_OPSET, MAX_OPSET = 13, 18  # tf2onnx 1.17 writes opsets up to 18; QDQ per-channel needs >= 13

# An existing folder; ``~`` is expanded first, as everywhere else a path is given.
Folder = Annotated[DirectoryPath, BeforeValidator(lambda v: Path(v).expanduser() if isinstance(v, (str, Path)) else v)]


class StageOptions(BaseModel):
    """Frozen, no unknown keys; a bad value raises UsageError naming the flag (``FLAGS`` maps field -> flag)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    FLAGS: ClassVar[dict[str, str]] = {}
    COMMAND: ClassVar[str] = ""

    def __init__(self, **values: Any):
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise options_error(type(self), exc) from None

    @classmethod
    def flag(cls, name: str) -> str:
        """The CLI flag of field ``name`` (``--fine-tune-lr``), from ``FLAGS`` or the field name."""
        return cls.FLAGS.get(name, "--" + name.replace("_", "-")).split("/")[0]


_RULES = {"path_not_directory": "is not an existing folder", "path_not_file": "is not an existing file"}


def options_error(model: type[StageOptions], exc: ValidationError) -> UsageError:
    """The first problem of a pydantic ValidationError as one line: the flag, the value, the rule and a fix."""
    error = exc.errors(include_url=False)[0]
    name = str(error["loc"][0]) if error["loc"] else ""
    field = model.model_fields.get(name)
    flag = model.flag(name)
    if error["type"] == "extra_forbidden":
        return UsageError(f"option {flag} does not apply to `edgekit {model.COMMAND}`",
                          fix=f"drop it; `edgekit {model.COMMAND} --help` lists the options")
    bounded = field is not None and error["type"] in ("greater_than", "greater_than_equal", "less_than",
                                                      "less_than_equal")
    rule = (f"must be {range_text(field)}" if bounded else _RULES.get(error["type"])
            or error["msg"].replace("Input should be", "must be"))
    examples = field.examples if field is not None else None
    fix = f"use e.g. {flag} {examples[0]}" if examples else f"see `edgekit {model.COMMAND} --help`"
    value = error.get("input")
    return UsageError(f"{flag} {value if isinstance(value, (int, float, Path)) else repr(value)}: {rule}", fix=fix)


def range_text(field) -> str:
    """A field's bounds as one phrase: ``in 13..18``, ``in (0, 1)``, ``in [0, 1)`` or ``>= 1``."""
    bounds = {key: getattr(m, key) for m in field.metadata for key in ("ge", "gt", "le", "lt") if hasattr(m, key)}
    low = ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds["gt"]) if "gt" in bounds else None
    high = ("]", bounds["le"]) if "le" in bounds else (")", bounds["lt"]) if "lt" in bounds else None
    if low and high:
        if low[0] + high[0] == "[]" and all(isinstance(b[1], int) for b in (low, high)):
            return f"in {low[1]}..{high[1]}"
        return f"in {low[0]}{low[1]}, {high[1]}{high[0]}"
    sign, limit = ({"[": ">=", "(": ">"}[low[0]], low[1]) if low else ({"]": "<=", ")": "<"}[high[0]], high[1])
    return f"{sign} {limit}"


def _combination(message: str, fix: str) -> None:
    raise UsageError(message, fix=fix)


class FinetuneOptions(StageOptions):
    """Every option that changes a finetune's result (hashed into checkpoints and recorded in the manifest)."""

    FLAGS: ClassVar[dict[str, str]] = {"learning_rate": "--lr", "fine_tune_learning_rate": "--fine-tune-lr",
                                       "validation_fraction": "--val-fraction", "augment": "--augment/--no-augment"}
    COMMAND: ClassVar[str] = "finetune"

    backbone: str = Field("efficientnet_lite0", description="Backbone name (see `edgekit backbones`); the default "
                                                            "is measured more accurate than mobilenet_v2 and loses "
                                                            "less in int8 (README).")
    weights: str | None = Field("imagenet", description="'imagenet' (bundled or cached weights), 'none' (random "
                                                        "init), or a path to a weights file.")
    input_size: int | None = Field(None, ge=32, le=1024, examples=[224],
                                   description="Square input size in pixels (default: the backbone's).")
    alpha: float = Field(1.0, gt=0, le=2, examples=[1.0],
                         description="Width multiplier (MobileNetV2; pretrained weights exist for 1.0 only).")
    epochs: int = Field(30, ge=1, examples=[30],
                        description="Head-training epochs on cached features (cheap: seconds each).")
    batch_size: int = Field(32, ge=1, examples=[32], description="Batch size.")
    learning_rate: float = Field(1e-3, gt=0, examples=[1e-3], description="Head learning rate (Adam).")
    dropout: float = Field(0.2, ge=0, lt=1, examples=[0.2], description="Dropout before the classification layer.")
    label_smoothing: float = Field(0.1, ge=0, lt=1, examples=[0.1],
                                   description="Label smoothing for the cross-entropy loss.")
    augment: bool = Field(True, description="Flip/crop/brightness/contrast augmentation.")
    augment_copies: int = Field(1, ge=0, examples=[1], description="Augmented copies of the training set whose "
                                                                   "features are cached for head training.")
    balance_classes: bool = Field(False, description="Weight classes inversely to their frequency (for imbalanced "
                                                     "folders).")
    early_stopping: int = Field(5, ge=0, examples=[5], description="Stop head training after this many epochs "
                                                                   "without validation-loss improvement (0: off).")
    fine_tune_layers: int = Field(0, ge=0, examples=[20], description="Phase 2: unfreeze this many top backbone "
                                                                      "layers (BatchNorm stays frozen).")
    fine_tune_epochs: int = Field(0, ge=0, examples=[3], description="Phase 2 epochs (full forward/backward passes: "
                                                                     "slow on CPU).")
    fine_tune_learning_rate: float = Field(1e-5, gt=0, examples=[1e-5], description="Phase 2 learning rate.")
    validation_fraction: float = Field(0.2, gt=0, lt=1, examples=[0.2],
                                       description="Held-out fraction when there is no validation folder.")
    seed: int = Field(0, ge=0, description="Random seed (recorded in the manifest; same seed, same metrics).")

    @model_validator(mode="after")
    def _phase_two_needs_both(self) -> FinetuneOptions:
        if (self.fine_tune_layers > 0) != (self.fine_tune_epochs > 0):
            _combination("--fine-tune-layers and --fine-tune-epochs go together",
                         "set both above 0 to unfreeze the top layers, or neither")
        return self


class CompressOptions(StageOptions):
    """Every option of ``edgekit compress`` that shapes its variants (recorded in each manifest)."""

    COMMAND: ClassVar[str] = "compress"

    int8: bool = Field(False, description="Full-integer int8 (weights and activations; usually fastest on ARM "
                                          "CPUs, NPUs and the Edge TPU). Needs calibration images.")
    float16: bool = Field(False, description="float16 weights (half the size, float compute).")
    dynamic: bool = Field(False, description="Dynamic-range: int8 weights, float activations (small, but often "
                                             "slower than float on CPU).")
    int16x8: bool = Field(False, description="int16 activations, int8 weights (more accurate than int8; needs "
                                             "calibration). XNNPACK has no int16x8 kernels, so LiteRT runs it on its "
                                             "built-in CPU kernels: many times slower than int8 and than float32.")
    io_dtype: Literal[IO_DTYPES] = Field("float32", examples=["int8"],
                                         description="Input/output tensor type of int8 models: float32 (quantize "
                                                     "inside), int8 or uint8 (Edge TPU / MCU style).")
    calibration_samples: int = Field(200, ge=MIN_CALIBRATION_IMAGES, examples=[200],
                                     description="How many calibration images to use (class-stratified, seeded; "
                                                 f">= {MIN_CALIBRATION_IMAGES}).")
    prune: float | None = Field(None, gt=0, lt=1, examples=[0.5],
                                description="Magnitude-prune to this sparsity in (0,1) with recovery fine-tuning "
                                            "(e.g. 0.5); shrinks the gzip size.")
    prune_for: Literal[PRUNE_TARGETS] = Field(
        "size", examples=["latency"],
        description="What --prune should buy: size (every Conv2D/Dense; smaller gzip, same speed) or latency "
                    "(1x1 convolutions only, tfmot's XNNPACK policy, --prune >= 0.67, fine-tuned to match the parent's "
                    f"outputs (distillation, {LATENCY_PRUNE_FINE_TUNE_EPOCHS} fine-tune epochs unless given, README: "
                    "pruning); float32 stored sparse, "
                    "checked that XNNPACK's sparse kernels run here, else says why).")
    cluster: int | None = Field(None, ge=2, le=MAX_CLUSTERS, examples=[16],
                                description="Cluster each kernel into N shared values (k-means++, 2 <= N <= "
                                            f"{MAX_CLUSTERS}) with a short fine-tune.")
    qat: bool = Field(False, description="Quantization-aware training, then int8 (keeps --prune sparsity / --cluster "
                                         "clusters). Activation ranges start from the calibration images (the "
                                         "manifest's qat.activation_ranges).")
    qat_distill: bool = Field(
        False, description="With --qat: train on the float parent's own softened outputs (distillation, temperature "
                           "2) instead of the labels, so the int8 model learns to agree with its parent, which is what "
                           "the reported drop and agreement measure (the manifest's qat.distillation records it). "
                           "On MobileNetV2 one epoch agreed 0.918 with the parent, plain int8 0.910 (README: int8 "
                           "recovery).")
    fine_tune_epochs: int | None = Field(
        None, ge=0, examples=[2],
        description=f"Epochs of fine-tuning for --prune/--cluster/--qat (default {DEFAULT_FINE_TUNE_EPOCHS}; "
                    f"{LATENCY_PRUNE_FINE_TUNE_EPOCHS} with --prune-for latency: MobileNetV2 lost 3.6 points at 4 "
                    "and up to 1.2 at 8 over three seeds; the manifest records the epochs used and whether they were "
                    "defaulted).")
    max_accuracy_drop: float | None = Field(
        None, ge=0, examples=[1.0],
        description="With --int8: the largest top-1 drop (points) allowed. Layers to keep float are chosen on 40% "
                    "of the eval images (fewest whose drop there plus the margin certification needs fits) and the "
                    "bound is certified (one-sided 95% upper bound) on the rest, with at most one fallback (more "
                    "layers float; both looks at level 0.025); else it fails, naming the smallest bound the images "
                    "certify. With --bias-correction every candidate is bias-corrected first, so fewer layers stay "
                    "float.")
    bias_correction: bool = Field(
        False, description="With --int8: empirical bias correction (as NNCF/AIMET): shift each conv/depthwise/dense "
                           "int32 bias so its per-channel mean output on calibration images matches float. Same size; "
                           "about one int8 run of 64 images per layer. With --max-accuracy-drop every candidate the "
                           "guard tries is corrected (that cost is paid per candidate).")
    equalize: bool = Field(
        False, description="With --int8/--int16x8: cross-layer equalization (as AIMET CLE) of the float model first: "
                           "consecutive convolutions' channels are rescaled so their weight ranges match; the ReLU6 "
                           "between them becomes ReLU (a small change to the float model, inside the reported drop). For "
                           "per-tensor weights; with this converter's per-channel int8 it made MobileNetV2 worse "
                           "(README: int8 recovery), so measure before you ship it.")
    activation_ranges: Literal[ACTIVATION_RANGES] = Field(
        DEFAULT_ACTIVATION_RANGES, examples=["minmax"],
        description="With --int8: how each activation tensor's int8 range is set from the calibration images: "
                    "percentile (the default: clip the 0.01% most extreme values at each end), minmax (the "
                    "converter's own, every value kept: one outlier coarsens the whole tensor's grid) or "
                    "mse (the clip with the smallest expected quantization error). "
                    "Inputs and softmax logits keep min/max; QAT models keep the ranges they learned. Percentile took "
                    "MobileNetV2's int8 drop from +1.93 to +0.00 points at 224 px and from +2.17 to +0.33 at 160 "
                    "(n=2,440) and left EfficientNet-Lite0 where it was (README: int8 recovery). Costs one more pass "
                    "over the calibration images.")
    weight_rounding: Literal[WEIGHT_ROUNDING] = Field(
        DEFAULT_WEIGHT_ROUNDING, examples=["adaround"],
        description="With --int8: how weights are rounded to int8: nearest (the converter's own) or adaround (as "
                    "AIMET/NNCF: each weight rounded up or down so that each layer's output on 64 calibration images "
                    "moves least, layer by layer; the converter then writes exactly those integers). Same size. "
                    "MobileNetV2's agreement with float went from 0.949 to 0.956 at 224 px and 0.941 to 0.954 at 160 "
                    "(n=2,440). Adds about a minute: MobileNetV2 160 px took 97-103 s in all instead of 31-38 s "
                    "(the rounding 43-46 s; AMD EPYC with AVX-512/VNNI, 2 cores, normal priority; README: int8 "
                    "accuracy).")
    seed: int = Field(0, ge=0, description="Random seed (recorded in the manifest; same seed, same metrics).")

    @property
    def int8_activation_ranges(self) -> str | None:
        """The estimator a post-training int8 model's ranges come from; None where none is made (no --int8, or
        QAT, whose int8 keeps the ranges it learned)."""
        return self.activation_ranges if self.int8 and not self.qat else None

    @property
    def int8_weight_rounding(self) -> str | None:
        """How a post-training int8 model of the parent itself rounds its weights; None where --weight-rounding
        cannot apply (no --int8, a trained variant, or float16/dynamic/int16x8 beside it)."""
        if not self.int8 or self.needs_training() or self.float16 or self.dynamic or self.int16x8:
            return None
        return self.weight_rounding

    @model_validator(mode="after")
    def _sound_combination(self) -> CompressOptions:
        """Combinations that make no sense, before any folder is read."""
        if self.prune is not None and self.cluster is not None:
            _combination("--prune and --cluster cannot be combined in one run", "run compress once per optimisation")
        if self.prune_for == "latency":
            self._check_latency_pruning()
        if self.int8 and self.dynamic:
            _combination("--dynamic (float activations, int8 weights) and --int8 (full integer) exclude each other",
                         "pick one; run compress twice to compare them")
        if self.qat and (self.float16 or self.dynamic or self.int16x8):
            _combination("--qat trains for int8 and cannot produce --float16/--dynamic/--int16x8 variants",
                         "drop those flags (QAT always writes an int8 model) or run compress without --qat")
        if self.qat_distill and not self.qat:
            _combination("--qat-distill chooses what --qat trains on", "add --qat, or drop --qat-distill")
        if self.io_dtype != "float32" and not (self.int8 or self.qat):
            _combination(f"--io-dtype {self.io_dtype} applies only to full-integer models",
                         "add --int8 or drop --io-dtype")
        if self.max_accuracy_drop is not None:
            if not self.int8 or self.qat:
                _combination("--max-accuracy-drop guards post-training --int8 only", "add --int8 (without --qat)")
            if self.io_dtype == "uint8":
                _combination("--max-accuracy-drop supports --io-dtype float32 or int8", "use --io-dtype int8")
        if self.bias_correction and (not self.int8 or self.needs_training()):
            _combination("--bias-correction corrects a post-training --int8 model of the parent itself",
                         "use it with --int8 (and optionally --max-accuracy-drop), without --prune/--cluster/--qat")
        if self.equalize and (not (self.int8 or self.int16x8) or self.needs_training() or self.float16 or self.dynamic):
            _combination("--equalize changes the float model that post-training --int8/--int16x8 quantizes",
                         "use it with --int8 and/or --int16x8 only (no --float16/--dynamic/--prune/--cluster/--qat); "
                         "run compress again for the other variants")
        if self.activation_ranges != DEFAULT_ACTIVATION_RANGES and self.int8_activation_ranges is None:
            _combination(f"--activation-ranges {self.activation_ranges} sets the ranges of a post-training --int8 "
                         "model (QAT learns its own)", "add --int8 (without --qat), or drop --activation-ranges")
        if self.weight_rounding != DEFAULT_WEIGHT_ROUNDING and self.int8_weight_rounding is None:
            _combination(f"--weight-rounding {self.weight_rounding} changes the float model that post-training --int8 "
                         "quantizes", "use it with --int8 only (no --float16/--dynamic/--int16x8/--prune/--cluster/"
                         "--qat); run compress again for the other variants")
        if self.needs_training() and self.epochs < 1:
            _combination("--fine-tune-epochs must be >= 1 with --prune/--cluster/--qat", "use e.g. --fine-tune-epochs 2")
        return self

    def _check_latency_pruning(self) -> None:
        if self.prune is None:
            _combination("--prune-for latency needs --prune", "add e.g. --prune 0.7")
        if self.prune < MIN_SPARSE_ZERO_FRACTION:
            _combination(f"--prune {self.prune} is too low for --prune-for latency: XNNPACK runs 1x1 convolutions "
                         f"sparse only when at least {MIN_SPARSE_ZERO_FRACTION:.0%} of their weights are zero",
                         "use --prune 0.7 or more (or --prune-for size)")
        if self.qat:
            _combination("--prune-for latency keeps the model float32 (XNNPACK's sparse kernels are float only); "
                         "--qat trains for int8", "drop --qat, or use --prune-for size")

    def require_work(self) -> None:
        """Refuse a run that would write nothing (the model itself allows it, e.g. to read defaults)."""
        if not self.modes():
            _combination("nothing to do: no compression option given",
                         "pass at least one of --int8, --float16, --dynamic, --int16x8, --prune, --cluster, --qat")

    @property
    def prefix(self) -> str:
        if self.prune is not None:
            return f"{'sparse' if self.prune_for == 'latency' else 'pruned'}{round(self.prune * 100)}-"
        if self.cluster is not None:
            return f"clustered{self.cluster}-"
        return "qat-" if self.qat else ""

    def modes(self) -> list[tuple[str, str]]:
        """(variant name, TFLite mode) for each model this run writes."""
        chosen = [mode for mode, on in (("float16", self.float16), ("dynamic", self.dynamic),
                                         ("int8", self.int8 or self.qat), ("int16x8", self.int16x8)) if on]
        if not chosen and (self.prune is not None or self.cluster is not None):
            chosen = ["float32"]
        if self.prune_for == "latency":  # the variant that can run sparse; int8 etc. are written dense as asked
            return [(self.prefix + "float32", "sparse_float32")] + [(self.prefix + mode, mode) for mode in chosen
                                                                    if mode != "float32"]
        return [(self.prefix + mode, mode) for mode in chosen]

    @property
    def epochs(self) -> int:
        """The fine-tune epochs this run trains: as given, else the default of its mode (latency pruning's is
        longer, see LATENCY_PRUNE_FINE_TUNE_EPOCHS)."""
        if self.fine_tune_epochs is not None:
            return self.fine_tune_epochs
        return LATENCY_PRUNE_FINE_TUNE_EPOCHS if self.prune_for == "latency" else DEFAULT_FINE_TUNE_EPOCHS

    def needs_calibration(self) -> bool:
        return self.int8 or self.int16x8 or self.qat

    def needs_training(self) -> bool:
        return self.prune is not None or self.cluster is not None or self.qat


class ExportOptions(StageOptions):
    """The options of ``edgekit export`` that depend on the target (today all taken by ``onnx``; the targets
    registry says which target takes which, and refuses the others)."""

    COMMAND: ClassVar[str] = "export"

    opset: int | None = Field(None, ge=MIN_OPSET, le=MAX_OPSET, examples=[17],
                              description=f"ONNX opset to write ({MIN_OPSET}..{MAX_OPSET}; default 17).")
    int8: bool = Field(False, description="Static int8 quantization (QDQ: per-channel int8 weights, uint8 "
                                          "activations; Softmax stays float), calibrated on images. About 1.9x "
                                          "faster than fp32 on CPU.")
    dynamic: bool = Field(False, description="Dynamic (weight-only) quantization. Warning: 3-11x SLOWER than fp32 "
                                             "for CNNs on CPU; use --int8 instead unless the model is mostly MatMul.")
    calibration: Folder | None = Field(None, description="Image folder for --int8 calibration (default: the parent's "
                                                       "training folder from its manifest).")
    calibration_samples: int | None = Field(None, ge=1, examples=[200],
                                            description="Images used for --int8 calibration (default 200).")
    calibrate_method: Literal[CALIBRATE_METHODS] | None = Field(
        None, examples=["minmax"],
        description=f"Activation range estimator for --int8: {', '.join(CALIBRATE_METHODS)} (default minmax).")
    simplify: bool = Field(False, description="Simplify the graph with onnxslim before quantization/saving.")


class ProfileOptions(StageOptions):
    """How ``edgekit profile`` measures (latency runs, threads, interleaved rounds)."""

    FLAGS: ClassVar[dict[str, str]] = {"budget_s": "--budget-s"}
    COMMAND: ClassVar[str] = "profile"

    runs: int = Field(50, ge=1, examples=[50], description="Timed inference runs per device.")
    warmup: int = Field(5, ge=0, examples=[5], description="Untimed warm-up runs before the timed ones.")
    threads: int | None = Field(None, ge=1, examples=[1],
                                description="Inference threads (default: the device profile's).")
    budget_s: float | None = Field(None, gt=0, examples=[2.0],
                                   description="Time the runs for this many seconds instead of --runs.")
    rounds: int = Field(5, ge=1, examples=[5], description="With several models: interleaved rounds (A B A B ...), "
                                                           "each model once per round in a fresh process.")


def recipe_properties(model: type[StageOptions], *, exclude: tuple[str, ...] = (),
                      defaults: dict[str, Any] | None = None) -> dict[str, dict]:
    """The model's fields as JSON Schema properties for the recipe: pydantic's own schema, with an optional
    field whose default is None shown as its plain type (a recipe leaves the key out instead), and
    ``defaults`` where a recipe's default differs from the command's."""
    schema = model.model_json_schema()["properties"]
    properties = {}
    for name, spec in schema.items():
        if name in exclude:
            continue
        spec = {k: v for k, v in spec.items() if k != "title"} | ({"default": defaults[name]}
                                                                   if defaults and name in defaults else {})
        options = spec.pop("anyOf", None)
        if options:
            kinds = [o for o in options if o.get("type") != "null"]
            merged = dict(kinds[0])
            if model.model_fields[name].default is not None:
                merged["type"] = [merged["type"], "null"]
            spec = merged | spec
        properties[name] = spec
    return properties
