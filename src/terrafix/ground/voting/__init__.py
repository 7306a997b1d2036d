"""Voting: candidates of one z/x/y compared across flights (compare.py), the decision
(decide.py), and the worker that re-evaluates tiles as candidates arrive (voter.py)."""
