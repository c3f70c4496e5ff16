"""Old home of the Langevin-type samplers; they now live in :mod:`diffcourse.prior.samplers.langevin`."""
from .samplers.langevin import *  # noqa: F401,F403
