"""Training engine: fit() and evaluate(), early stopping, checkpoints, devices."""

from dlrun.engine.loop import COLUMNS, Evaluation, History, SplitEvaluation, evaluate, fit

__all__ = ["COLUMNS", "Evaluation", "History", "SplitEvaluation", "evaluate", "fit"]
