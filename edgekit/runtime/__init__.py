"""The on-device runtime: numpy + Pillow + one inference runtime (LiteRT, tflite-runtime or onnxruntime).

Nothing in this package imports TensorFlow (``tensorflow.lite`` is only a last-resort fallback when no
light TFLite runtime is installed). Typical use::

    from edgekit.runtime import Predictor
    Predictor("runs/demo/int8").predict("photo.jpg", top_k=3)

Names are imported on first use, so a process that needs one module (the verification subprocess
needs only ``backends``) does not pay for the others at start-up.
"""

import importlib

_EXPORTS = {
    "ACCELERATORS": "backends", "accelerator_available": "backends",
    "embed_onnx_metadata": "metadata", "embed_tflite_metadata": "metadata", "make_metadata": "metadata",
    "read_onnx_metadata": "metadata", "read_tflite_metadata": "metadata",
    "Predictor": "predictor", "PredictionLog": "predlog",
    "check_model_file": "safety", "check_onnx_external_data": "safety", "verify_tflite": "safety",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
