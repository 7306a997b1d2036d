"""Exception family of the recorder package.

Producers never see these at run time: `Producer.record` raises only `RecorderPolicyError`, and
only for a programming error at the call site (a raw camera frame, an oversized record). Every
run-time failure (queue overrun, full disk, a broken writer) is counted and marked in the stream
instead, because the recorder must never take the navigation hot path down with it.
"""

from __future__ import annotations


class RecorderError(Exception):
    """A recorder set-up or read-back problem: bad configuration, bad folder, bad file."""


class RecorderPolicyError(RecorderError):
    """A payload the recorder must refuse by policy (R3): raw camera frames and the like.

    Raised at the call site so the programming error shows up in the first test that hits it,
    not as a silently bloated flight log.
    """


class RecorderFormatError(RecorderError):
    """A flight folder or segment file that is not what the recorder writes."""
