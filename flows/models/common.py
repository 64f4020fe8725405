"""Options shared by every family: the image preprocessing layer (logit with α, a −½ shift, or none)."""

from __future__ import annotations

from dataclasses import field
from typing import Any, Literal

from ..layers import LogitTransform, Shift
from ..registry import ConfigError
from ..transform import Transform

Preprocess = Literal["logit", "shift", "none"]


def option(default: Any, doc: str) -> Any:
    """A dataclass field with a one-line description (shown by ``nflab models``).

    A description that starts with ``images:`` or ``vectors:`` and does not name the other kind declares the option
    for that kind of data only: ``build`` refuses it when given for the other (it would be silently ignored).
    """
    applies = next((k for k in ("images", "vectors") if doc.startswith(f"{k}:")), None)
    if applies is not None and f"{'vectors' if applies == 'images' else 'images'}:" in doc:
        applies = None
    metadata = {"doc": doc, "applies": applies}
    if isinstance(default, list | tuple):
        return field(default=tuple(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def preprocessing(kind: str, alpha: float) -> Transform | None:
    """The first layer of an image flow on dequantized data in [0, 1)."""
    if kind == "logit":
        return LogitTransform(alpha)
    if kind == "shift":
        return Shift(-0.5)
    return None


def require(condition: bool, path: str, value: Any, allowed: str) -> None:
    if not condition:
        raise ConfigError(path, value, allowed)


def halvings(h: int, w: int, min_size: int = 1) -> int:
    """How many times an h×w image can be squeezed (both sides even, result ≥ ``min_size``)."""
    n = 0
    while h % 2 == 0 and w % 2 == 0 and h // 2 >= min_size and w // 2 >= min_size:
        h, w, n = h // 2, w // 2, n + 1
    return n
