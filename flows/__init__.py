"""nflab.flows — the normalizing-flow family in pure PyTorch.

``available()`` lists the families, ``build(name, shape, **config)`` makes a :class:`Flow` with the published
defaults, ``bits_per_dim`` converts nats on dequantized data to the bits/dim of the published tables.
"""

from . import data, hooks
from . import models as _models  # noqa: F401  (registers the families)
from .flow import Flow, standard_normal_log_prob
from .jacobian import MAX_EXACT_DIM, brute_force_logdet
from .metrics import bits_per_dim
from .registry import ConfigError, available, build, options, resolve_config
from .transform import Compose, Transform

__all__ = [
    "MAX_EXACT_DIM",
    "Compose",
    "ConfigError",
    "Flow",
    "Transform",
    "available",
    "bits_per_dim",
    "brute_force_logdet",
    "build",
    "data",
    "hooks",
    "options",
    "resolve_config",
    "standard_normal_log_prob",
]
