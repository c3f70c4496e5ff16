"""Checks for the exercise notebooks, one module per lesson (see `_core.exercise`)."""
