"""Exception family of the autopilot package.

Every error names the value that was wrong and what was expected, so that a refused take-off or
a rejected operator hint tells the operator what to fix without reading code.
"""

from __future__ import annotations


class AutopilotError(Exception):
    """Base of every error raised by terrafix.autopilot."""


class LinkConfigError(AutopilotError, ValueError):
    """A connection string, rate or id outside what a link accepts."""


class LinkClosedError(AutopilotError):
    """An operation on a link that has been closed (or was never started)."""


class SigningHandshakeError(AutopilotError):
    """MAVLink 2 signing could not be established or verified with the flight controller.

    Take-off must be refused when this is raised (REQUIREMENTS A2): the link is not trustworthy.
    """


class MspError(AutopilotError, ValueError):
    """A malformed MSP v2 frame or a payload field outside its wire range."""


class RelocHintError(AutopilotError, ValueError):
    """An operator re-localisation hint that cannot be used (the reason goes back in the NACK)."""


class FcParameterError(AutopilotError):
    """The flight controller's parameters would make a GNSS switch lose the position (or could
    not be read): take-off must be refused; the message names each parameter."""
