"""Errors of the evaluation package."""

from __future__ import annotations


class EvalError(ValueError):
    """A run folder, results file or dataset that evaluation cannot use, with what was wrong
    and what was expected."""
