"""edgekit: from a folder of photos to a small, fast, measured model on an edge device.

The package import is deliberately light (no TensorFlow): heavy libraries are imported inside the
functions that need them, so the CLI and the on-device runtime start fast.
"""

__version__ = "0.1.0"
