"""The exception family of `terrafix.inference`."""

from __future__ import annotations


class InferenceError(RuntimeError):
    """An ONNX model could not be named, built, loaded or run as configured.

    Raised with the offending value (file name, provider list, shape) and what was expected.
    """
