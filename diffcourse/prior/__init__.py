"""The prior p(x): learning and sampling it (VE/VP/flow processes, denoisers, samplers)."""

from .._lazy import lazy_submodules as _lazy_submodules

__getattr__, __dir__ = _lazy_submodules(__name__, __path__)  # e.g. diffcourse.prior.pretrained
