"""Multirun: the summary across the jobs of a sweep (Hydra callback)."""
