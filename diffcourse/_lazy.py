"""Lazy subpackage access (PEP 562): ``import diffcourse`` stays cheap (it imports no torch), yet
``diffcourse.prior.pretrained.load(...)`` works without importing each subpackage by hand."""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable


def lazy_submodules(package: str, path) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for package ``package`` (its ``__name__``) whose ``__path__`` is
    ``path``: an attribute that names one of its modules or subpackages imports it on first use."""
    def submodules() -> set[str]:
        return {m.name for m in pkgutil.iter_modules(path)}

    def __getattr__(name: str):
        if not name.startswith("__") and name in submodules():
            return importlib.import_module(f"{package}.{name}")  # also sets it on the package
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        module = importlib.import_module(package)
        return sorted(set(vars(module)) | submodules())

    return __getattr__, __dir__
