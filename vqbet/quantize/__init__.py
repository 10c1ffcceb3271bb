"""Action quantisers (pure torch): VectorQuantizer, ResidualVQ, FSQ, ResidualFSQ."""

from vqbet.quantize.common import CodebookUsage, QuantizerOutput, nearest_code
from vqbet.quantize.fsq import FSQ
from vqbet.quantize.kmeans import kmeans
from vqbet.quantize.residual import Residual, ResidualFSQ, ResidualVQ
from vqbet.quantize.schedule import anneal_temperature
from vqbet.quantize.vq import VectorQuantizer

__all__ = [
    "FSQ",
    "CodebookUsage",
    "QuantizerOutput",
    "Residual",
    "ResidualFSQ",
    "ResidualVQ",
    "VectorQuantizer",
    "anneal_temperature",
    "kmeans",
    "nearest_code",
]
