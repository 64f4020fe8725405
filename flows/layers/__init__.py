"""Building blocks of the flow family: each a ``Transform`` (x → (z, logdet), inverse) or a conditioner net."""

from .activations import ELU, CLipSwish, CPila, LipSwish, Pila, ReLU, Sine, cpila_normaliser, make_activation
from .actnorm import ActNorm
from .autoregressive import MaskedAutoregressive
from .coupling import MaskedCoupling, alternating_mask, channel_mask, checkerboard_mask, half_mask
from .dense import LipschitzDenseLayer, dense_net
from .elementwise import DiagonalScaling, LogitTransform, Shift
from .frozen import frozen_copy
from .invconv import InvertibleLinear
from .lipschitz import LipschitzNormalizedLayer, SpectralConv2d, SpectralLinear, lipschitz_layers, set_power_budgets
from .lipschitz_nets import lipschitz_convnet, lipschitz_mlp
from .made import MADE, MaskedLinear
from .multiscale import FactorOut, LearnedGaussian, SplitPrior
from .reshape import Flattened, Permutation, Squeezed, squeeze2d, unsqueeze2d

__all__ = [
    "ELU",
    "MADE",
    "ActNorm",
    "CLipSwish",
    "CPila",
    "DiagonalScaling",
    "FactorOut",
    "Flattened",
    "InvertibleLinear",
    "LearnedGaussian",
    "LipSwish",
    "LipschitzDenseLayer",
    "LipschitzNormalizedLayer",
    "LogitTransform",
    "MaskedAutoregressive",
    "MaskedCoupling",
    "MaskedLinear",
    "Permutation",
    "Pila",
    "ReLU",
    "Shift",
    "Sine",
    "SpectralConv2d",
    "SpectralLinear",
    "SplitPrior",
    "Squeezed",
    "alternating_mask",
    "channel_mask",
    "checkerboard_mask",
    "cpila_normaliser",
    "dense_net",
    "frozen_copy",
    "half_mask",
    "lipschitz_convnet",
    "lipschitz_layers",
    "lipschitz_mlp",
    "make_activation",
    "set_power_budgets",
    "squeeze2d",
    "unsqueeze2d",
]
