"""Old home of the sampler plumbing; it now lives in :mod:`diffcourse.prior.samplers.loop`."""
from .samplers.loop import *  # noqa: F401,F403
from .samplers.loop import (_check_count, _check_generator, _guard, _noise, _prepare, _report,  # noqa: F401
                            _steps, prior_sample_init)
