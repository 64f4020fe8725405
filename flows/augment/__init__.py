"""Wrappers every family accepts through ``build``: variational dequantization and padding.

``AugmentConfig`` holds the common options (``dequantization``, ``padding`` and theirs); the registry validates
them next to each family's own, builds the family on the padded shape and calls ``augment_flow``, which wraps
the built flow: ``DequantizedFlow(PaddedFlow(inner))`` — dequantization first (it needs the data's bins),
padding next, the family last. With the defaults (uniform dequantization, no padding) the flow is unchanged.
Options that cannot matter are reset to their defaults (padding options when padding = 0, dequantization
options when it is uniform), so that equal runs resolve to equal configs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..flow import Flow
from ..options import option
from .dequantization import DequantizedFlow, UniformDequantizer, VariationalDequantizer
from .padding import (
    PaddedFlow,
    default_padding_samples,
    default_padding_std,
    jacobian_condition_number,
    padded_shape,
)
from .wrapped import WrappedFlow


@dataclass
class AugmentConfig:
    """Options common to every family (its methods avoid the name ``validate``, which combined configs must
    resolve to the family's own)."""

    dequantization: Literal["uniform", "variational"] = option(
        "uniform", "discrete data: uniform (the data's own noise) or a learned q(u|k) (variational, Flow++)"
    )
    dequantization_bins: int = option(
        256, "variational: levels n of the data, k = floor(n·x) (17 for digits)", ge=2, le=65536
    )
    dequantization_blocks: int = option(4, "variational: conditional affine couplings in q(u|k)", ge=1, le=1000)
    dequantization_hidden: tuple[int, ...] = option((32, 32), "variational: hidden widths of q's nets", ge=1, le=65536)
    dequantization_samples: int = option(1, "variational: importance samples K of log_prob in eval mode", ge=1)
    padding: int = option(0, "extra coordinates (vectors) or channels (images) appended for the flow", ge=0, le=4096)
    padding_kind: Literal["zero", "gaussian"] = option(
        "gaussian",
        "training noise: zeros (the joint density at 0) or Gaussian (the ELBO); evaluated by a bound on log p(x)",
    )
    padding_std: float | None = option(
        None, "Gaussian padding σ (null: 1 for vectors; 1/8 around 1/2, truncated to (0, 1), for images)", gt=0
    )
    padding_samples: int | None = option(
        None, "importance samples K of the evaluation bound on log p(x) (null: 100 for vectors, 10 for images)", ge=1
    )

    def normalized(self, kind: str = "vectors") -> AugmentConfig:
        """The same wrapping with the options that cannot matter reset to their defaults and the data-dependent
        ones (``padding_std``, ``padding_samples``) set for ``kind`` (``vectors`` or ``images``) of data."""
        out = dataclasses.replace(self)
        default = AugmentConfig()
        if out.padding == 0:
            out.padding_kind, out.padding_std = default.padding_kind, default.padding_std
            out.padding_samples = default.padding_samples
        else:
            stand_in = (1,) if kind == "vectors" else (1, 1, 1)
            if out.padding_std is None:
                out.padding_std = default_padding_std(stand_in)
            if out.padding_samples is None:
                out.padding_samples = default_padding_samples(stand_in)
        if out.dequantization == "uniform":
            for key in ("dequantization_bins", "dequantization_blocks", "dequantization_hidden"):
                setattr(out, key, getattr(default, key))
            out.dequantization_samples = default.dequantization_samples
        return out


AUGMENT_OPTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(AugmentConfig))


def augment_part(config: Any) -> AugmentConfig:
    """The augmentation options held by a resolved config (the defaults when it holds none)."""
    if not isinstance(config, AugmentConfig):
        return AugmentConfig()
    return AugmentConfig(**{key: getattr(config, key) for key in AUGMENT_OPTIONS})


def augment_flow(flow: Flow, shape: Sequence[int], options: AugmentConfig) -> Flow:
    """Wrap ``flow`` (built on ``padded_shape(shape, options.padding)``) for data of ``shape``."""
    shape = tuple(int(s) for s in shape)
    name, config = flow.name, flow.config
    if options.padding > 0:
        flow = PaddedFlow(
            flow,
            shape,
            padding=options.padding,
            kind=options.padding_kind,
            std=options.padding_std,
            samples=options.padding_samples,
            name=name,
            config=config,
        )
    if options.dequantization == "variational":
        dequantizer = VariationalDequantizer(
            shape,
            options.dequantization_bins,
            blocks=options.dequantization_blocks,
            hidden=options.dequantization_hidden,
        )
        flow = DequantizedFlow(
            flow,
            dequantizer,
            n_bins=options.dequantization_bins,
            num_samples=options.dequantization_samples,
            name=name,
            config=config,
        )
    return flow


__all__ = [
    "AUGMENT_OPTIONS",
    "AugmentConfig",
    "DequantizedFlow",
    "PaddedFlow",
    "UniformDequantizer",
    "VariationalDequantizer",
    "WrappedFlow",
    "augment_flow",
    "augment_part",
    "default_padding_samples",
    "default_padding_std",
    "jacobian_condition_number",
    "padded_shape",
]
