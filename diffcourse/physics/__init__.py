"""The likelihood p(y|x): forward operators, noise models."""

from .._lazy import lazy_submodules as _lazy_submodules

__getattr__, __dir__ = _lazy_submodules(__name__, __path__)  # e.g. diffcourse.prior.pretrained
