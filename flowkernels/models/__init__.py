"""Model classes that compose :mod:`flowkernels.nn` and :mod:`flowkernels.ops` into published systems."""

from .glow import CONV_KINDS, Glow, SplitPrior, TrainHistory, save_sample_grid, train_glow

__all__ = ["CONV_KINDS", "Glow", "SplitPrior", "TrainHistory", "save_sample_grid", "train_glow"]
