"""The likelihood p(y|x): forward operators, noise models."""
