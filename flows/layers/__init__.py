"""Building blocks of the flow family: each a ``Transform`` (x → (z, logdet), inverse) or a conditioner net."""

from .actnorm import ActNorm
from .autoregressive import MaskedAutoregressive
from .coupling import MaskedCoupling, alternating_mask, channel_mask, checkerboard_mask, half_mask
from .elementwise import DiagonalScaling, LogitTransform, Shift
from .invconv import InvertibleLinear
from .made import MADE, MaskedLinear
from .multiscale import FactorOut, LearnedGaussian, SplitPrior
from .reshape import Flattened, Permutation, Squeezed, squeeze2d, unsqueeze2d

__all__ = [
    "MADE",
    "ActNorm",
    "DiagonalScaling",
    "FactorOut",
    "Flattened",
    "InvertibleLinear",
    "LearnedGaussian",
    "LogitTransform",
    "MaskedAutoregressive",
    "MaskedCoupling",
    "MaskedLinear",
    "Permutation",
    "Shift",
    "SplitPrior",
    "Squeezed",
    "alternating_mask",
    "channel_mask",
    "checkerboard_mask",
    "half_mask",
    "squeeze2d",
    "unsqueeze2d",
]
