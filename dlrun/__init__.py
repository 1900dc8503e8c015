"""dlrun: train a model from a Hydra config, then diagnose underfitting, overfitting and distribution shift."""

__version__ = "0.1.0"
