"""Typed errors. Each carries a one-line message that names the file or option and the fix.

The CLI maps every :class:`EdgekitError` to that line and a non-zero exit code; tracebacks appear
only with ``--debug``.
"""

from __future__ import annotations


class EdgekitError(Exception):
    """Base class: a problem the user can fix. ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.message} (fix: {self.fix})" if self.fix else self.message


class UsageError(EdgekitError):
    """Options that are invalid or make no sense together; raised before any work starts."""

    exit_code = 2


class SparsePatternError(UsageError):
    """``--prune-for latency`` on a model outside XNNPACK's sparse-inference pattern: it could never run sparse.
    A sweep lists its standard sparse variant as unavailable for such a backbone instead of failing."""


class DataError(EdgekitError):
    """An image folder, image file or label set that cannot be used."""

    exit_code = 3


class ModelFileError(EdgekitError):
    """A model or weight file that is missing, corrupt, of the wrong format or unsafe to load."""

    exit_code = 4


class UnsafeModelError(ModelFileError):
    """A model file that would execute code (Lambda layers, custom objects, pickled globals)."""


class ManifestError(EdgekitError):
    """A manifest.json that is missing, malformed or inconsistent with its artifact."""

    exit_code = 4


class ConversionError(EdgekitError):
    """A converter (TFLite, tf2onnx, Edge TPU compiler) failed or crashed."""

    exit_code = 5


class ValidationError(EdgekitError):
    """An exported artifact disagrees with its parent beyond tolerance, or produced NaN/collapse."""

    exit_code = 6


class AccuracyError(ValidationError):
    """Accuracy-guarded compression could not meet the requested limit. Where the guard got as far as
    certifying, ``smallest_certifiable_bound_points`` is the smallest limit its certification images support,
    so a caller can decide on a looser limit without parsing the message."""

    def __init__(self, message: str, *, fix: str | None = None,
                 smallest_certifiable_bound_points: float | None = None):
        super().__init__(message, fix=fix)
        self.smallest_certifiable_bound_points = smallest_certifiable_bound_points


class DeviceUnavailableError(EdgekitError):
    """The requested hardware, delegate or runtime is absent here; the message says what is missing."""

    exit_code = 7


class RemoteDeviceError(DeviceUnavailableError):
    """A remote device could not be reached, authenticated against or lacks a runtime."""


class GateFailedError(EdgekitError):
    """A ``--fail-if`` condition held: the measured artifact does not meet the CI gate."""

    exit_code = 8


class RunFailedError(EdgekitError):
    """A recipe run or sweep in which a requested variant failed (``--allow-failures`` accepts it)."""

    exit_code = 10


class OutputError(EdgekitError):
    """An output path that cannot be written (read-only, disk full, equal to an input)."""

    exit_code = 9


class RecipeError(UsageError):
    """A recipe that does not match the schema; the message gives the key path."""
