"""The exception family of `terrafix.vision`."""

from __future__ import annotations


class VisionError(ValueError):
    """Bad input to, or an impossible request of, the visual-positioning pipeline.

    Raised with the offending value and what was expected. A frame that simply does not
    register is not an error: it is a `RegistrationResult` with a rejection reason.
    """
