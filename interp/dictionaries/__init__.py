"""Sparse dictionaries: SAEs (ReLU, TopK, JumpReLU) and transcoders, their training, metrics, I/O and dashboards.

Variants are sibling files behind :mod:`interp.dictionaries.registry`; see each module's
docstring for the algorithm and paper.
"""

from .base import EncodeOutput, ForwardOutput, SAEConfig, SparseCoder, fvu
from .registry import ARCHS, make, register
from .saelens_io import SAELensFormatError, load_sae, save_sae
from .source import TensorSource
from .train import TrainConfig, TrainResult, geometric_median, train_sae

__all__ = [
    "ARCHS", "EncodeOutput", "ForwardOutput", "SAEConfig", "SAELensFormatError", "SparseCoder", "TensorSource",
    "TrainConfig", "TrainResult", "fvu", "geometric_median", "load_sae", "make", "register", "save_sae", "train_sae",
]
