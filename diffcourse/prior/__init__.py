"""The prior p(x): learning and sampling it (VE/VP/flow processes, denoisers, samplers)."""
