"""Helpers shared by the test modules, imported as ``from _util import gen``.

pytest's default ("prepend") import mode puts ``tests/`` (no ``__init__.py``) on ``sys.path`` before
it imports a test module, in the main process and in every xdist worker, so this plain module is
importable from any test file; unlike a fixture it also serves module-level tables of cases.
"""
from __future__ import annotations

import torch


def gen(seed: int = 0) -> torch.Generator:
    """A fresh CPU generator seeded with ``seed``: every test draws its own reproducible numbers.

    >>> torch.equal(torch.rand(3, generator=gen(1)), torch.rand(3, generator=gen(1)))
    True
    """
    return torch.Generator().manual_seed(seed)
