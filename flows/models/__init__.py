"""The flow families; importing this package registers them."""

from . import glow, maf, nice, realnvp

__all__ = ["glow", "maf", "nice", "realnvp"]
