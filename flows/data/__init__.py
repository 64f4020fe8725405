"""Data for nflab.flows: 2-D toy densities, 1-D Monotone-Flows targets and local image datasets.

Image files come from the data root ($NFLAB_DATA, $NFLAB_HOME/data, ./.nflab/data); nothing is downloaded.
"""

from __future__ import annotations

from .dequantize import sample_batch, uniform_dequantize
from .errors import DatasetFileError, DatasetFormatError
from .images import IMAGE_DATASETS, ImageSet, load_images
from .oned import ONED_TARGETS, sample_1d, target_function
from .paths import default_data_root
from .toy import TOY_DATASETS, sample_toy


def available() -> dict[str, tuple[str, ...]]:
    """Names of every dataset by kind: {"toy": ..., "oned": ..., "images": ...}."""
    return {"toy": TOY_DATASETS, "oned": ONED_TARGETS, "images": IMAGE_DATASETS}


__all__ = [
    "IMAGE_DATASETS",
    "ONED_TARGETS",
    "TOY_DATASETS",
    "DatasetFileError",
    "DatasetFormatError",
    "ImageSet",
    "available",
    "default_data_root",
    "load_images",
    "sample_1d",
    "sample_batch",
    "sample_toy",
    "target_function",
    "uniform_dequantize",
]
