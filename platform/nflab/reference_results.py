"""Published numbers the leaderboard shows as ``source="paper"`` rows next to nflab's own runs.

E2: Monotone Flows Table 1 (2-D toy densities, test NLL in nats). E3: image density in bits per dimension
(uniform dequantization unless the model name says otherwise), as compiled in the Monotone Flows comparison,
with the CIF rows from the CIF paper. Dataset names use nflab's spelling (``nflab.flows.data``).

Every row carries what its number is and its budget, like nflab's own rows, so that the leaderboard ranks it only
with numbers of the same kind: ``quantity`` (exact: coupling/autoregressive flows; unbiased: Russian-roulette
log-dets (Residual Flow, i-DenseNet, Monotone Flow) and FFJORD's Hutchinson trace on images; biased: i-ResNet's
truncated series; bound: CIF's importance-weighted bound with 100 samples, variational dequantization),
``selection`` (the toy table averages the last 20 of its evaluations), the training ``steps`` (50 000 for the toy
table), the parameter count where the paper gives it (Monotone Flows Table 2), the evaluation ``estimator`` and
the test-set size (10 000 toy samples; the MNIST and CIFAR-10 test sets, the 50 000 ImageNet validation images).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    """One published number: ``model`` on ``dataset`` scored ``value`` in ``metric`` (lower is better)."""

    dataset: str
    model: str
    family: str | None  # the nflab family that reproduces it, where there is one
    metric: str
    value: float
    citation: str
    quantity: str = "exact"
    selection: str = "published"
    steps: int | None = None
    n_params: int | None = None
    estimator: str | None = None
    test_size: int | None = None
    levels: int | None = None  # grey levels of the data (bits/dim): 256 for the image sets


MONOTONE = "Ahn, Kim, Hong & Kim, Invertible Monotone Operators for Normalizing Flows, NeurIPS 2022"
_E2_CITATION = f"{MONOTONE}, Table 1 (test NLL, nats)"
_E3_CITATION = f"{MONOTONE}, image density comparison (bits/dim)"
_CIF_CITATION = "Cornish, Caterini, Deligiannidis & Doucet, Relaxing Bijectivity Constraints with CIFs, ICML 2020"

# dataset: (i-DenseNet, Monotone Flow)
_E2: dict[str, tuple[float, float]] = {
    "2spirals": (2.729, 2.658),
    "8gaussians": (2.840, 2.840),
    "checkerboard": (3.609, 3.540),
    "circles": (3.280, 3.276),
    "moons": (2.401, 2.400),
    "pinwheel": (2.343, 2.333),
    "rings": (2.884, 2.665),
    "swissroll": (2.680, 2.676),
}

_IMAGE_SETS = ("mnist", "cifar10", "imagenet32", "imagenet64")
_TEST_SIZES = {"mnist": 10_000, "cifar10": 10_000, "imagenet32": 50_000, "imagenet64": 50_000}
_TOY = {"selection": "last-20-mean", "steps": 50_000, "estimator": "exact", "test_size": 10_000}

# model: (quantity, estimator) of the published evaluation
_E3_KIND: dict[str, tuple[str, str]] = {
    "NICE": ("exact", "exact"),
    "MADE": ("exact", "exact"),
    "MAF": ("exact", "exact"),
    "Real NVP": ("exact", "exact"),
    "Glow": ("exact", "exact"),
    "FFJORD": ("unbiased", "hutchinson"),
    "i-ResNet": ("biased", "series"),
    "Residual Flow": ("unbiased", "rr"),
    "i-DenseNet": ("unbiased", "rr"),
    "Monotone Flow": ("unbiased", "rr"),
    "Monotone Flow + VDQ": ("bound", "rr+vdq"),
}
# Monotone Flows Table 2: (model, dataset) → parameters
_PARAMS: dict[tuple[str, str], int] = {
    ("Residual Flow", "mnist"): 16_600_000,
    ("Residual Flow", "cifar10"): 25_200_000,
    ("Monotone Flow", "mnist"): 20_900_000,
    ("Monotone Flow", "cifar10"): 24_900_000,
    ("Monotone Flow", "imagenet32"): 47_000_000,
    ("Monotone Flow", "imagenet64"): 48_900_000,
}

# model: (nflab family or None, bpd on mnist, cifar10, imagenet32, imagenet64; None = not reported)
_E3: dict[str, tuple[str | None, tuple[float | None, ...]]] = {
    "NICE": ("nice", (4.36, 4.48, None, None)),
    "MADE": (None, (2.04, 5.67, None, None)),
    "MAF": ("maf", (1.89, 4.31, None, None)),
    "Real NVP": ("realnvp", (1.06, 3.49, 4.28, 3.98)),
    "Glow": ("glow", (1.05, 3.35, 4.09, 3.81)),
    "FFJORD": ("ffjord", (0.99, 3.40, None, None)),
    "i-ResNet": ("iresnet", (1.06, 3.45, None, None)),
    "Residual Flow": ("resflow", (0.97, 3.28, 4.01, 3.76)),
    "i-DenseNet": ("idensenet", (None, 3.25, 3.98, None)),
    "Monotone Flow": ("monotone", (0.928, 3.215, 3.961, 3.734)),
    "Monotone Flow + VDQ": (None, (None, 3.062, 3.901, None)),
}

_CIF = {"levels": 256, "test_size": 10_000}
_CIF_ROWS = (
    Reference(
        "cifar10", "ResFlow (CIF repo baseline)", "resflow", "bpd", 3.408, _CIF_CITATION, "unbiased", **_CIF,
        estimator="rr",
    ),
    Reference(
        "cifar10", "CIF-ResFlow", "cif", "bpd", 3.334, _CIF_CITATION, "bound", **_CIF, estimator="rr+iwae-100"
    ),
)  # fmt: skip


def _build() -> tuple[Reference, ...]:
    rows: list[Reference] = []
    for dataset, (idensenet, monotone) in _E2.items():
        rows.append(Reference(dataset, "i-DenseNet", "idensenet", "nats", idensenet, _E2_CITATION, **_TOY))
        rows.append(Reference(dataset, "Monotone Flow", "monotone", "nats", monotone, _E2_CITATION, **_TOY))
    for model, (family, values) in _E3.items():
        quantity, estimator = _E3_KIND[model]
        for dataset, value in zip(_IMAGE_SETS, values):
            if value is not None:
                rows.append(
                    Reference(
                        dataset,
                        model,
                        family,
                        "bpd",
                        value,
                        _E3_CITATION,
                        quantity,
                        n_params=_PARAMS.get((model, dataset)),
                        estimator=estimator,
                        test_size=_TEST_SIZES[dataset],
                        levels=256,
                    )
                )
    rows.extend(_CIF_ROWS)
    return tuple(rows)


REFERENCES: tuple[Reference, ...] = _build()


def references(*, metric: str | None = None, dataset: str | None = None) -> list[Reference]:
    """The published numbers, optionally only one metric (``nats``/``bpd``) and/or one dataset."""
    return [
        r for r in REFERENCES if (metric is None or r.metric == metric) and (dataset is None or r.dataset == dataset)
    ]
