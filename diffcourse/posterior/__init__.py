"""The posterior p(x|y): guidance, projections, solvers, classical baselines."""

from .._lazy import lazy_submodules as _lazy_submodules

__getattr__, __dir__ = _lazy_submodules(__name__, __path__)  # e.g. diffcourse.prior.pretrained
