"""Options shared by every family: the image preprocessing layer (logit with α, a −½ shift, or none)."""

from __future__ import annotations

from typing import Any, Literal

from ..layers import LogitTransform, Shift
from ..options import ConfigError, Search, option  # noqa: F401 (the declaration helpers of every family)
from ..transform import Transform

Preprocess = Literal["logit", "shift", "none"]


def preprocessing(kind: str, alpha: float) -> Transform | None:
    """The first layer of an image flow on dequantized data in [0, 1)."""
    if kind == "logit":
        return LogitTransform(alpha)
    if kind == "shift":
        return Shift(-0.5)
    return None


def require(condition: bool, option_name: str, value: Any, allowed: str) -> None:
    """A check across options (ranges of single options are declared with them)."""
    if not condition:
        raise ConfigError((option_name,), value, allowed)


def halvings(h: int, w: int, min_size: int = 1) -> int:
    """How many times an h×w image can be squeezed (both sides even, result ≥ ``min_size``)."""
    n = 0
    while h % 2 == 0 and w % 2 == 0 and h // 2 >= min_size and w // 2 >= min_size:
        h, w, n = h // 2, w // 2, n + 1
    return n
