"""diffcourse: diffusion models for inverse problems in (medical) imaging."""

__version__ = "0.1.0"

from ._lazy import lazy_submodules as _lazy_submodules

__getattr__, __dir__ = _lazy_submodules(__name__, __path__)  # e.g. diffcourse.prior.pretrained
