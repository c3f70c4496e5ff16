"""Shared test set-up: one thread, no windows, and a per-notebook time summary.

The environment defaults below are what ``bash tools/bootstrap.sh test`` sets too; they are repeated
here so that ``pytest tests/test_x.py`` run by hand behaves the same (they must be set before torch
or matplotlib are imported, hence at the top of the conftest).
"""
from __future__ import annotations

import os
from collections import defaultdict

for _name, _value in {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}.items():
    os.environ.setdefault(_name, _value)

_NOTEBOOK_SECONDS: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    """Add up the time of every cell (and kernel start-up) of each notebook run by nbval."""
    path = report.nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        _NOTEBOOK_SECONDS[path] += report.duration


def pytest_terminal_summary(terminalreporter):
    """Print the notebooks by total time, slowest first (nbval's --durations lists single cells)."""
    if not _NOTEBOOK_SECONDS:
        return
    terminalreporter.section("notebook durations (all cells, kernel start included)")
    ranked = sorted(_NOTEBOOK_SECONDS.items(), key=lambda item: -item[1])
    for path, seconds in ranked:
        terminalreporter.write_line(f"{seconds:8.1f}s  {path}")
