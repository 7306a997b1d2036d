"""Errors of the flight review."""

from __future__ import annotations


class ReviewError(ValueError):
    """A flight folder or truth dataset the review cannot use, with what was expected."""
