"""Model classes that compose :mod:`flowkernels.nn` and :mod:`flowkernels.ops` into published systems."""

from .arm_training import train_forecaster, train_pixelcnn, train_vq_autoencoder
from .conditional import BinaryDequantizer, ConditionalFlow
from .conditional_baselines import FactorizedBernoulli, FactorizedLogistic
from .conditional_training import train_conditional
from .dequantization import (
    ARConvDequantizer,
    AutoregressiveDequantizer,
    DequantizedFlow,
    UniformDequantizer,
    VariationalDequantizer,
)
from .dequantization_training import train_dequantized
from .distributions import Categorical, DiscretizedLogisticMixture
from .glow import CONV_KINDS, Glow, SplitPrior
from .glow_training import save_sample_grid, train_glow
from .hexnet import LATTICES, HexNet
from .hexnet_training import HexNetHistory, hex_digits, train_hexnet
from .idf import IDF, LatentStep, load_idf
from .idf_training import train_idf
from .pixelcnn import ForecastingModules, PixelCNN
from .training import TrainHistory
from .vq import VQAutoencoder

__all__ = [
    "CONV_KINDS",
    "Glow",
    "SplitPrior",
    "TrainHistory",
    "save_sample_grid",
    "train_glow",
    "IDF",
    "LatentStep",
    "load_idf",
    "train_idf",
    "BinaryDequantizer",
    "ConditionalFlow",
    "FactorizedBernoulli",
    "FactorizedLogistic",
    "train_conditional",
    "ARConvDequantizer",
    "AutoregressiveDequantizer",
    "DequantizedFlow",
    "UniformDequantizer",
    "VariationalDequantizer",
    "train_dequantized",
    "Categorical",
    "DiscretizedLogisticMixture",
    "ForecastingModules",
    "PixelCNN",
    "VQAutoencoder",
    "train_forecaster",
    "train_pixelcnn",
    "train_vq_autoencoder",
    "LATTICES",
    "HexNet",
    "HexNetHistory",
    "hex_digits",
    "train_hexnet",
]
