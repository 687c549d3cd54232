"""The on-device runtime: numpy + Pillow + one inference runtime (LiteRT, tflite-runtime or onnxruntime).

Nothing in this package imports TensorFlow (``tensorflow.lite`` is only a last-resort fallback when no
light TFLite runtime is installed). Typical use::

    from edgekit.runtime import Predictor
    Predictor("runs/demo/int8").predict("photo.jpg", top_k=3)
"""

from edgekit.runtime.backends import ACCELERATORS, accelerator_available
from edgekit.runtime.metadata import (embed_onnx_metadata, embed_tflite_metadata, make_metadata,
                                      read_onnx_metadata, read_tflite_metadata)
from edgekit.runtime.predictor import Predictor
from edgekit.runtime.predlog import PredictionLog
from edgekit.runtime.safety import check_model_file, check_onnx_external_data, verify_tflite

__all__ = ["ACCELERATORS", "PredictionLog", "Predictor", "accelerator_available", "check_model_file", "check_onnx_external_data",
           "embed_onnx_metadata", "embed_tflite_metadata", "make_metadata", "read_onnx_metadata",
           "read_tflite_metadata", "verify_tflite"]
