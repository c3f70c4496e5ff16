"""diffcourse: diffusion models for inverse problems in (medical) imaging."""

__version__ = "0.1.0"
