"""The flow families; importing this package registers them."""

from . import ffjord, glow, idensenet, implicit, iresnet, maf, monotone, nice, realnvp, resflow

# isort: split
from . import cif  # last: it wraps the others, and registration order is the order of available()

__all__ = ["cif", "ffjord", "glow", "idensenet", "implicit", "iresnet", "maf", "monotone", "nice", "realnvp", "resflow"]
