"""Image datasets as uint8 tensors [N, C, H, W] plus labels; read from local files, never downloaded."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .cifar import read_cifar10
from .digits import read_digits
from .imagenet import read_imagenet
from .mnist import read_mnist
from .paths import default_data_root

IMAGE_DATASETS: tuple[str, ...] = ("digits", "mnist", "cifar10", "imagenet32", "imagenet64")
SPLITS: tuple[str, ...] = ("train", "test")


@dataclass(frozen=True)
class ImageSet:
    """images: uint8 [N, C, H, W] with values in 0..n_bins−1; labels: int64 [N]; n_bins grey levels."""

    images: torch.Tensor
    labels: torch.Tensor
    n_bins: int

    @property
    def shape(self) -> tuple[int, int, int]:
        """Per-image shape (C, H, W)."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def __len__(self) -> int:
        return int(self.images.shape[0])


def load_images(name: str, split: str = "train", *, root: str | os.PathLike | None = None) -> ImageSet:
    """Load ``split`` of image dataset ``name`` from ``root`` (default: ``default_data_root()``)."""
    if name not in IMAGE_DATASETS:
        raise ValueError(f"unknown image dataset {name!r}; allowed: {', '.join(IMAGE_DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    if name == "digits":
        images, labels = read_digits(split)
        return ImageSet(images, labels, n_bins=17)
    base = Path(root) if root is not None else default_data_root()
    if name == "mnist":
        images, labels = read_mnist(base, split)
    elif name == "cifar10":
        images, labels = read_cifar10(base, split)
    else:
        images, labels = read_imagenet(base, split, size=int(name.removeprefix("imagenet")))
    return ImageSet(images, labels, n_bins=256)
