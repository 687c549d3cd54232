"""``compress``: prune / cluster / QAT a finetuned float model, convert it to TFLite variants, validate, write.

Order of work: every option and folder is checked first (nothing heavy is loaded until the plan
is sound); then the Keras model is optimised once, exported once, and all variants convert in
one child process; each variant is compared with the float parent on held-out images and only
when all of them pass is anything written (``out_dir/<variant>/model.tflite`` + manifest).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.artifacts import Artifact, Manifest, Preprocessing, library_versions, parent_record, write_artifact
from edgekit.child_process import reusing_children
from edgekit.errors import DataError, OutputError, UsageError
from edgekit.options import (DEFAULT_ACTIVATION_RANGES, DEFAULT_WEIGHT_ROUNDING, MIN_CALIBRATION_IMAGES,
                             CompressOptions)
from edgekit.progress import status

if TYPE_CHECKING:
    from edgekit.importer import ImportOptions

MODEL_FILE = "model.tflite"
MAX_EVAL_IMAGES = 4000  # all of a few-thousand-image test set: the drop's interval narrows as 1/sqrt(n)
CERTIFY_FRACTION = 0.6  # share of the eval images the guard certifies on (the rest tunes it)


@dataclass
class Plan:
    """The validated run: the parent artifact and every folder it will read or write."""

    parent: Artifact
    out_dir: Path
    options: CompressOptions
    preprocessing: Preprocessing
    calibration: Path | None
    train_data: Path | None
    eval_data: Path | None
    eval_from_calibration: bool = False
    eval_folder: object | None = None  # an ImageFolder of held-out images found through the parent's manifest
    eval_description: str = ""


def plan_compression(*, model: Path, out_dir: Path, options: CompressOptions, calibration: Path | None,
                     train_data: Path | None, eval_data: Path | None,
                     import_options: ImportOptions | None = None) -> Plan:
    """Check every option and folder; raise UsageError/DataError/OutputError naming the option before any work."""
    from edgekit.data import recorded_training_images, scan_image_folder
    from edgekit.targets.common import check_out_dir, held_out_images, load_parent

    options.require_work()
    parent = load_parent(model, formats=("keras", "savedmodel"), target="compress", out_dir=out_dir,
                         import_options=import_options)
    if parent.manifest.format == "savedmodel" and options.needs_training():
        raise UsageError(f"--prune/--cluster/--qat retrain Keras layers; {parent.path} is a SavedModel",
                         fix="pass the model as .keras or .h5 (model.save('model.keras')), or use post-training "
                             "--int8/--float16/--dynamic/--int16x8")
    if parent.manifest.format == "savedmodel" and options.weight_rounding != DEFAULT_WEIGHT_ROUNDING:
        raise UsageError(f"--weight-rounding {options.weight_rounding} rounds Keras layers' kernels; {parent.path} is "
                         "a SavedModel", fix="pass the model as .keras or .h5 (model.save('model.keras')), or drop "
                                             "--weight-rounding")
    out_dir = check_out_dir(out_dir, parent)
    for name, _ in options.modes():
        if (out_dir / name).resolve() == parent.directory.resolve():
            raise OutputError(f"variant folder {out_dir / name} is the input model's folder",
                              fix="pass a different --out folder so the parent is not overwritten")
    labels = parent.manifest.labels
    recorded = recorded_training_images(parent.manifest)
    plan = Plan(parent=parent, out_dir=out_dir, options=options, preprocessing=parent.manifest.preprocessing_spec(),
                calibration=None, train_data=None, eval_data=None)
    if options.needs_calibration():
        plan.calibration = Path(calibration).expanduser() if calibration else recorded
        if plan.calibration is None:
            raise UsageError("--int8 needs calibration images and the model's manifest names no training folder",
                             fix="pass --calibration DIR (a folder of <class>/ images like the training data)")
        folder = scan_image_folder(plan.calibration, classes=labels)
        if len(folder.items) < MIN_CALIBRATION_IMAGES:
            raise DataError(f"--calibration {plan.calibration} has only {len(folder.items)} usable images "
                            f"(need >= {MIN_CALIBRATION_IMAGES})", fix="point --calibration at a folder with more images")
    if options.needs_training():
        plan.train_data = Path(train_data).expanduser() if train_data else recorded
        if plan.train_data is None:
            raise UsageError("--prune/--cluster/--qat fine-tune on training images and none are known",
                             fix="pass train_data (the finetune image folder)")
        scan_image_folder(plan.train_data, classes=labels)
    recorded_eval = parent.manifest.training.eval_folder  # `edgekit import --eval-data`
    plan.eval_data = (Path(eval_data).expanduser() if eval_data else Path(recorded_eval) if recorded_eval
                      else None)
    if plan.eval_data is not None:
        scan_image_folder(plan.eval_data, classes=labels)
    elif (held_out := held_out_images(parent)) is not None:
        plan.eval_folder, plan.eval_description = held_out
    elif plan.calibration is not None:
        plan.eval_from_calibration = True
    elif options.max_accuracy_drop is not None:
        raise UsageError("--max-accuracy-drop needs labelled held-out images", fix="pass --eval-data DIR")
    return plan


@dataclass
class EvalSet:
    """Labelled (or, without labels, sample) inputs variants are compared with the float parent on."""

    inputs: np.ndarray
    labels: np.ndarray | None
    source: str
    training_data: bool = False  # the float model was trained on these images

    def subset(self, indices: np.ndarray, what: str) -> EvalSet:
        return EvalSet(self.inputs[indices], self.labels[indices], f"{what} of {self.source}", self.training_data)


def _calibration_and_eval(plan: Plan) -> tuple[np.ndarray | None, EvalSet]:
    """Normalised calibration inputs and the evaluation set (never the calibration images themselves).

    Held-out images come from --eval-data, else test/ or val/ beside the training folder, else the
    finetune's own validation split; only when there are none is part of the calibration (training)
    folder held out, and the set is then marked as training data.
    """
    from edgekit.data import calibration_sample, load_folder_arrays, normalize, scan_image_folder, stratified_split
    from edgekit.targets.common import validation_set

    labels, seed = plan.parent.manifest.labels, plan.options.seed
    calibration = None
    eval_folder, description = plan.eval_folder, plan.eval_description
    if plan.eval_data is not None:
        eval_folder, description = scan_image_folder(plan.eval_data, classes=labels), f"images from {plan.eval_data}"
    if plan.calibration is not None:
        folder = scan_image_folder(plan.calibration, classes=labels)
        if plan.eval_from_calibration:  # hold out part of the calibration folder for evaluation
            keep, held = stratified_split(folder.labels, 0.3, seed)
            folder, eval_folder = folder.subset(keep), folder.subset(held)
            description = f"TRAINING images from {plan.calibration} (held out of calibration; no held-out folder)"
        elif eval_folder is not None:  # never calibrate on the images that are scored
            scored = {path.resolve() for path in eval_folder.paths}
            folder = folder.subset([i for i, path in enumerate(folder.paths) if path.resolve() not in scored])
        calibration = calibration_inputs(folder, plan.preprocessing, plan.options.calibration_samples, seed)
    if eval_folder is None:
        checks = validation_set(plan.parent, plan.preprocessing, seed=seed)
        return calibration, EvalSet(checks.inputs, checks.labels, checks.source, checks.training_data)
    eval_folder = calibration_sample(eval_folder, MAX_EVAL_IMAGES, seed=seed + 1)
    pixels, truth = load_folder_arrays(eval_folder, plan.preprocessing)
    return calibration, EvalSet(normalize(pixels, plan.preprocessing), truth, description,
                                training_data=plan.eval_from_calibration)


def calibration_inputs(folder, preprocessing: Preprocessing, samples: int, seed: int) -> np.ndarray:
    """``samples`` class-stratified, seeded images of ``folder`` as normalised inputs: what an int8 conversion
    calibrates on (public so a benchmark can re-convert a model compress built on the same images)."""
    from edgekit.data import calibration_sample, load_folder_arrays, normalize

    pixels, _ = load_folder_arrays(calibration_sample(folder, samples, seed=seed), preprocessing)
    return normalize(pixels, preprocessing)


def recorded_activation_ranges(manifest: Manifest) -> str | None:
    """The activation ranges a compress variant's post-training int8 conversion used, None for any other variant.
    A manifest written before ``--activation-ranges`` existed records none: its ranges were the converter's min/max."""
    options = manifest.options
    if options.get("mode") != "int8" or options.get("qat"):
        return None
    return options.get("activation_ranges") or "minmax"


def _optimise(keras_model, plan: Plan, calibration: np.ndarray | None) -> tuple[object, dict]:
    """Apply --prune / --cluster / --qat to the Keras model; return it with their reports. QAT's activation
    ranges start from the (normalised) ``calibration`` inputs."""
    from edgekit.stages.tfmot_wrappers import load_training_images

    options, reports = plan.options, {}
    if not options.needs_training():
        return keras_model, reports
    images = load_training_images(plan.train_data, plan.parent.manifest.labels, plan.preprocessing)
    wrap = plan.parent.manifest.tfmot_wrap or "whole"
    common = {"epochs": options.epochs, "tfmot_wrap": wrap, "seed": options.seed}
    if options.prune is not None:
        from edgekit.stages.prune import prune_model

        keras_model, reports["pruning"] = prune_model(keras_model, images, sparsity=options.prune,
                                                      prune_for=options.prune_for, **common)
        status(f"pruned: {reports['pruning']['per_layer_type']}")
    if options.cluster is not None:
        from edgekit.stages.cluster import cluster_model

        keras_model, reports["clustering"] = cluster_model(keras_model, images, clusters=options.cluster, **common)
        status(f"clustered: at most {reports['clustering']['max_unique_values_clustered']} values per clustered layer")
    if options.qat:
        from edgekit.stages.quantize import qat_model

        preserve = "prune" if options.prune is not None else "cluster" if options.cluster is not None else None
        keras_model, reports["qat"] = qat_model(keras_model, images, calibration=calibration, preserve=preserve,
                                                distill=options.qat_distill, **common)
        ranges = reports["qat"]["activation_ranges"]
        status(f"QAT: {ranges['initialised']} activation ranges started from {ranges['from_images']} calibration "
               f"images (median width {ranges['median_width_after']} instead of {ranges['median_width_before']})")
    return keras_model, reports


def compress(*, model: Path, out_dir: Path, int8: bool = False, float16: bool = False, dynamic: bool = False,
             int16x8: bool = False, io_dtype: str = "float32", calibration: Path | None = None,
             calibration_samples: int = 200, prune: float | None = None, prune_for: str = "size",
             cluster: int | None = None, qat: bool = False, qat_distill: bool = False, train_data: Path | None = None,
             fine_tune_epochs: int | None = None,
             max_accuracy_drop: float | None = None, eval_data: Path | None = None, bias_correction: bool = False,
             equalize: bool = False, activation_ranges: str = DEFAULT_ACTIVATION_RANGES,
             weight_rounding: str = DEFAULT_WEIGHT_ROUNDING, seed: int = 0, trust: bool = False,
             import_options: ImportOptions | None = None) -> list[Artifact]:
    """Write one validated .tflite artifact per variant under ``out_dir``; see the module docstring.

    A model without a manifest is imported first (``import_options`` say its labels/preprocessing).
    """
    from edgekit._tf import set_seed
    from edgekit.keras_io import load_float_model
    from edgekit.metrics import accuracy_change, describe_change
    from edgekit.targets.common import compare_to_parent
    from edgekit.targets.tflite_converter import PreparedModel, convert_keras_to_tflite, embed_metadata, gzip_size, run_tflite

    options = CompressOptions(int8=int8, float16=float16, dynamic=dynamic, int16x8=int16x8, io_dtype=io_dtype,
                              calibration_samples=calibration_samples, prune=prune, prune_for=prune_for,
                              cluster=cluster, qat=qat, qat_distill=qat_distill, fine_tune_epochs=fine_tune_epochs,
                              max_accuracy_drop=max_accuracy_drop, bias_correction=bias_correction, equalize=equalize,
                              activation_ranges=activation_ranges, weight_rounding=weight_rounding, seed=seed)
    plan = plan_compression(model=model, out_dir=out_dir, options=options, calibration=calibration,
                            train_data=train_data, eval_data=eval_data,
                            import_options=_with_trust(import_options, trust))
    started = time.perf_counter()
    parent, labels = plan.parent, plan.parent.manifest.labels
    set_seed(seed)
    calibration_inputs, scored = _calibration_and_eval(plan)
    tuning = None
    if options.max_accuracy_drop is not None:
        tuning, scored = _tuning_and_certification(scored, options.max_accuracy_drop, seed)
    float_model = load_float_model(parent.path, trust=trust)
    reference = np.asarray(float_model.predict(scored.inputs, batch_size=32, verbose=0))
    tuning_reference = None if tuning is None else np.asarray(float_model.predict(tuning.inputs, batch_size=32,
                                                                                   verbose=0))

    def change(outputs: np.ndarray, on: EvalSet = scored, parent_outputs: np.ndarray = reference) -> dict:
        found = accuracy_change(on.labels, parent_outputs, outputs, labels, bound=options.max_accuracy_drop)
        found.update(source=on.source, source_is_training_data=on.training_data)
        if on.training_data:
            found["warnings"].append(f"measured on {on.source}: the float model was trained on them")
        return found

    # Sizes are compared with the parent as a float32 .tflite (same format, same metadata), not the .keras file.
    # Pruning/clustering change the weights in place, so the parent is converted before them. After --equalize
    # the baseline is the equalized float model (same size): the one bias correction must match.
    baseline = convert_keras_to_tflite(float_model, what=str(parent.path)) if options.needs_training() else None
    optimised, reports = _optimise(float_model, plan, calibration_inputs)
    if options.equalize:
        from edgekit.stages.equalization import equalize as equalize_layers

        optimised, reports["equalization"] = equalize_layers(optimised)
        found = reports["equalization"]
        status(f"equalized {found['pairs']} pairs of layers ({found['relu6_made_relu']} ReLU6 made ReLU): median "
               f"channel range ratio {found['median_channel_range_ratio_before']} -> "
               f"{found['median_channel_range_ratio_after']}")
    rounded_grids = None
    if options.weight_rounding == "adaround":  # the baseline stays the float model, not its rounded copy
        baseline, reports["weight_rounding"], rounded_grids = _adaround(optimised, parent, calibration_inputs,
                                                                        options)
    jobs = [(name, mode, options.io_dtype if mode == "int8" else "float32") for name, mode in options.modes()]
    variants: list[tuple[str, str, bytes, dict]] = []
    # The guard converts once per try; reusing_children() runs every try in one child (one TensorFlow import).
    with (reusing_children(),
          PreparedModel(optimised, what=str(parent.path), representative=calibration_inputs,
                        activation_ranges=options.int8_activation_ranges or "minmax") as prepared):
        converted = prepared.convert_many([(mode, io, ()) for _, mode, io in jobs] +
                                          ([] if baseline else [("float32", "float32", ())]))
        baseline = baseline or converted.pop()
        for (name, mode, io), data in zip(jobs, converted):
            extra: dict = {}
            if mode == "int8" and prepared.range_reports:  # what --activation-ranges narrowed
                extra["activation_ranges"] = prepared.range_reports[0]
            if mode == "int8" and rounded_grids is not None:
                _check_rounding(optimised, rounded_grids, data, reports["weight_rounding"])
            correct = None
            if mode == "int8" and options.bias_correction:  # on calibration images only, never the scored ones
                from edgekit.stages.bias_correction import correct_int8_biases

                def correct(candidate: bytes) -> tuple[bytes, dict]:
                    return correct_int8_biases(candidate, baseline, calibration_inputs)

                status(f"{name}: correcting int8 biases against float, layer by layer ...")
                data, extra["bias_correction"] = correct(data)
            if mode == "int8" and tuning is not None:
                from edgekit.stages.quantize import guarded_int8

                data, extra["accuracy_guard"] = guarded_int8(
                    prepared, plain=data, io_dtype=io, max_drop_points=options.max_accuracy_drop,
                    tune=lambda candidate: change(run_tflite(candidate, tuning.inputs), tuning, tuning_reference),
                    certify=lambda candidate: change(run_tflite(candidate, scored.inputs)),
                    certification_images=len(scored.labels), float32_tflite_bytes=len(baseline), correct=correct)
            variants.append((name, mode, embed_metadata(data, labels=labels, preprocessing=parent.manifest.preprocessing),
                             extra))
    for name, mode, data, extra in variants:
        if mode == "sparse_float32":
            extra["sparse_inference"] = _sparse_check(data, baseline, reports["pruning"], name)
    baseline = embed_metadata(baseline, labels=labels, preprocessing=parent.manifest.preprocessing)
    baseline_gzip = gzip_size(baseline)
    pending = []
    for name, mode, data, extra in variants:
        outputs = run_tflite(data, scored.inputs)
        validation = compare_to_parent(reference, outputs, quantized=True, min_agreement=0.0,
                                       what=f"{name}/{MODEL_FILE}", sample_source=scored.source,
                                       training_data=scored.training_data)
        metrics = {"validation": validation, "size": {
            "bytes": len(data), "gzip_bytes": gzip_size(data), "float32_tflite_bytes": len(baseline),
            "float32_tflite_gzip_bytes": baseline_gzip, "vs_float32_tflite": round(len(data) / len(baseline), 4),
            "gzip_vs_float32_tflite_gzip": round(gzip_size(data) / baseline_gzip, 4)}}
        if scored.labels is not None:
            metrics["accuracy"] = change(outputs)
            status(f"{name}: {describe_change(metrics['accuracy'])}")
            for warning in metrics["accuracy"]["warnings"]:
                status(f"warning: {name}: {warning}")
        pending.append((name, mode, data, metrics, extra))
    artifacts = [_write_variant(plan, name, mode, data, metrics, extra | reports)
                 for name, mode, data, metrics, extra in pending]
    from edgekit.monitoring import write_reference_profile

    for artifact in artifacts:
        write_reference_profile(artifact.directory, seed=seed)
    status(f"compress: wrote {len(artifacts)} variant(s) under {plan.out_dir} in {time.perf_counter() - started:.1f} s")
    return artifacts


def _adaround(model, parent: Artifact, calibration_inputs: np.ndarray,
              options: CompressOptions) -> tuple[bytes, dict, list]:
    """Round ``model``'s kernels (in place) AdaRound's way on the grid a plain int8 conversion of it uses; return
    the float32 .tflite of the model as it was, the rounding's report and the layers' grids (for
    :func:`_check_rounding` on the int8 conversion compress then makes of the rounded model)."""
    from edgekit.stages.weight_rounding import adaround, converter_grids
    from edgekit.targets.tflite_converter import PreparedModel

    with PreparedModel(model, what=str(parent.path), representative=calibration_inputs,
                       activation_ranges=options.int8_activation_ranges or "minmax") as prepared:
        plain, baseline = prepared.convert_many([("int8", "float32", ()), ("float32", "float32", ())])
    grids = converter_grids(model, plain)
    status(f"rounding {len(grids)} layers' int8 weights AdaRound's way on calibration images ...")
    return baseline, adaround(model, grids, calibration_inputs), grids


def _check_rounding(model, grids: list, int8_bytes: bytes, report: dict) -> None:
    """Record in ``report`` how many integers the int8 conversion of the rounded ``model`` wrote other than the
    chosen ones (0 when the converter lands on them)."""
    from edgekit.stages.weight_rounding import grid_mismatches

    report["converter_vs_chosen"] = grid_mismatches(model, grids, int8_bytes)
    status(f"AdaRound: {report['weights_rounded_other_way']} weights rounded the other way than nearest in "
           f"{report['wall_s']:.0f} s; the converter wrote {report['converter_vs_chosen']['integers_differing']} "
           "integers other than the chosen ones")


def _sparse_check(data: bytes, dense: bytes, pruning: dict, name: str) -> dict:
    """Whether XNNPACK runs the sparse variant with sparse kernels here (latency signature vs the dense parent)."""
    from edgekit.stages.xnnpack_sparse import check_sparse_inference, describe

    status(f"{name}: timing the sparse file against the dense one (XNNPACK's sparse kernels?)")
    check = check_sparse_inference(data, dense, zero_fraction=pruning["pruned_kinds_sparsity"], rule_broken=None)
    status(f"{name}: {describe(check)}")
    return check


def _with_trust(import_options: ImportOptions | None, trust: bool) -> ImportOptions:
    from edgekit.importer import ImportOptions

    return dataclasses.replace(import_options or ImportOptions(), trust=trust or bool(import_options and
                                                                                       import_options.trust))


def _tuning_and_certification(scored: EvalSet, bound: float, seed: int) -> tuple[EvalSet, EvalSet]:
    """Split the labelled eval images into a tuning part (the guard picks layers on it) and a disjoint
    certification part (the bound is checked, and every variant reported, on it); refuse when the
    certification part is too small to certify ``bound`` even for a model that never disagrees."""
    from edgekit.data import stratified_split
    from edgekit.metrics import certifiable_floor

    if scored.labels is None:
        raise UsageError("--max-accuracy-drop needs labelled held-out images", fix="pass --eval-data DIR")
    tune_idx, certify_idx = stratified_split(scored.labels, CERTIFY_FRACTION, seed + 2)
    floor = certifiable_floor(len(certify_idx))
    if floor > bound:
        raise UsageError(
            f"--max-accuracy-drop {bound:g}: {len(scored.labels)} labelled images ({len(certify_idx)} kept for "
            f"certification) cannot certify it; even a model that agrees with float on every image certifies "
            f"only {floor:.2f} points (one-sided 95%)",
            fix=f"pass --eval-data with more held-out images, or a bound >= {floor:.2f}")
    return scored.subset(tune_idx, "tuning split"), scored.subset(certify_idx, "certification split")


def _write_variant(plan: Plan, name: str, mode: str, data: bytes, metrics: dict, extra: dict) -> Artifact:
    from edgekit.targets.tflite_converter import tensor_specs

    directory = plan.out_dir / name
    input_spec, output_spec = tensor_specs(data)
    parent = plan.parent
    manifest = Manifest(
        format="tflite", artifact=MODEL_FILE, stage="compress", labels=list(parent.manifest.labels),
        preprocessing=plan.preprocessing.to_dict(), input=input_spec,
        output=output_spec | {"activation": parent.manifest.output.get("activation", "softmax")},
        parent=parent_record(parent, directory), backbone=parent.manifest.backbone,
        options=plan.options.model_dump() | {"variant": name, "mode": mode, "fine_tune_epochs": plan.options.epochs,
                                             "fine_tune_epochs_defaulted": plan.options.fine_tune_epochs is None,
                                             "activation_ranges": plan.options.int8_activation_ranges
                                             if mode == "int8" else None,
                                             "calibration": str(plan.calibration) if plan.calibration else None,
                                             "train_data": str(plan.train_data) if plan.train_data else None,
                                             "eval_data": str(plan.eval_data) if plan.eval_data
                                             else plan.eval_description or None},
        seed=plan.options.seed, metrics=metrics, extra=extra | {"parent_format": parent.manifest.format},
        versions=library_versions("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert", "numpy"))
    return write_artifact(directory, MODEL_FILE, manifest, writer=lambda tmp: tmp.write_bytes(data))
