"""Training batches and the fixed validation and test sets of one run, for toy 2-D densities and image datasets.

Two held-out splits with two roles: ``validation`` selects (the best checkpoint, early decisions) and ``test``
reports; nothing but the report reads the test split. Every stream is drawn from a generator derived from the
run's seed and a stream label, so it depends on the seed and the dataset only — two families run with one seed
see the same batches, validation set and test set (paired comparisons).

- Toy: a fresh batch every step from ``sample_toy`` with the run's data generator; the validation set is
  ``dataset.validation_samples`` points (null: as many as the test set) drawn once from ``(seed, "validation")``,
  the test set ``dataset.test_samples`` points drawn once from ``(seed, "test")``; all three are independent.
- Images: the validation split is the last ``dataset.validation_samples`` images of the training split (null:
  10 %, at least one), never trained on; training draws random images (with replacement, optionally only the
  first ``train_subset``) from the rest, uniformly dequantized with the data generator. The test split is
  dequantized once with the ``(seed, "test")`` generator and capped at ``dataset.test_samples`` images (all of it
  when that is null), which keeps periodic evaluation affordable; the validation images likewise with
  ``(seed, "validation")``. ``dataset.n_bins`` below the file's levels reduces the bit depth.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from nflab.flows.data import (
    IMAGE_DATASETS,
    TOY_DATASETS,
    ImageSet,
    load_images,
    sample_batch,
    sample_toy,
    uniform_dequantize,
)

from .seeding import make_generator

TOY_INIT_BATCH = 512  # first forward (ActNorm data-dependent init) on at least this many toy samples
IMAGE_INIT_BATCH = 128  # and on at least this many images
IMAGE_VALIDATION_SHARE = 0.1  # default validation split: this share of the training images
SPLITS = ("validation", "test")


def _reduce_bits(images: Tensor, have: int, want: int | None) -> tuple[Tensor, int]:
    if not want or want >= have:
        return images, have
    return (images.long() * want // have).to(torch.uint8), int(want)


def _validation_count(requested: int | None, available: int) -> int:
    if available < 2:
        raise ValueError(f"dataset: {available} training image(s) cannot be split into training and validation")
    wanted = int(requested) if requested else max(1, round(IMAGE_VALIDATION_SHARE * available))
    if not 1 <= wanted < available:
        raise ValueError(f"dataset.validation_samples: {wanted} is not below the {available} training images")
    return wanted


class DataSource:
    """What the loop needs from a dataset: ``shape``, ``n_bins``, ``train_batch``, ``init_batch``, the held-out
    ``validation`` and ``heldout`` (test) sets."""

    def __init__(
        self,
        dataset_cfg: Mapping[str, Any],
        *,
        seed: int,
        dtype: torch.dtype,
        device: torch.device,
        data_root: str | None = None,
    ) -> None:
        self.name = str(dataset_cfg["name"])
        self.dtype, self.device = dtype, device
        test_gen, val_gen = make_generator(seed, "test"), make_generator(seed, "validation")
        test_samples, val_samples = dataset_cfg.get("test_samples"), dataset_cfg.get("validation_samples")
        if self.name in TOY_DATASETS:
            self.is_image = False
            self.shape: tuple[int, ...] = (2,)
            self.n_bins: int | None = None
            self._train = None
            self.heldout = sample_toy(self.name, int(test_samples or 10_000), generator=test_gen, dtype=dtype)
            n_val = int(val_samples or len(self.heldout))
            self.validation = sample_toy(self.name, n_val, generator=val_gen, dtype=dtype)
        elif self.name in IMAGE_DATASETS:
            self.is_image = True
            train = load_images(self.name, "train", root=data_root)
            test = load_images(self.name, "test", root=data_root)
            n_val = _validation_count(val_samples, len(train.images))
            val_images, _ = _reduce_bits(train.images[-n_val:], train.n_bins, dataset_cfg.get("n_bins"))
            subset = dataset_cfg.get("train_subset")
            train_images = train.images[: len(train.images) - n_val]
            train_images = train_images[: int(subset)] if subset else train_images
            self._train_images, self.n_bins = _reduce_bits(train_images, train.n_bins, dataset_cfg.get("n_bins"))
            test_images, _ = _reduce_bits(test.images, test.n_bins, dataset_cfg.get("n_bins"))
            if test_samples:
                test_images = test_images[: int(test_samples)]
            self.shape = train.shape
            self._train = ImageSet(self._train_images, train.labels[: len(self._train_images)], self.n_bins)
            self.heldout = uniform_dequantize(test_images, self.n_bins, generator=test_gen, dtype=dtype)
            self.validation = uniform_dequantize(val_images, self.n_bins, generator=val_gen, dtype=dtype)
        else:
            allowed = ", ".join((*TOY_DATASETS, *IMAGE_DATASETS))
            raise ValueError(f"dataset {self.name!r} is not supported by the training loop; allowed: {allowed}")

    @property
    def dim(self) -> int:
        """Number of dimensions of one sample."""
        return math.prod(self.shape)

    def train_batch(self, n: int, generator: torch.Generator) -> Tensor:
        """A training batch of ``n`` samples on the run's device and dtype."""
        if self._train is None:
            x = sample_toy(self.name, n, generator=generator, dtype=self.dtype)
        else:
            images = sample_batch(self._train, n, generator=generator)
            x = uniform_dequantize(images, self.n_bins, generator=generator, dtype=self.dtype)
        return x.to(self.device)

    def init_batch(self, batch_size: int, generator: torch.Generator) -> Tensor:
        """A larger first batch so that data-dependent initialisation sees representative statistics."""
        floor = IMAGE_INIT_BATCH if self.is_image else TOY_INIT_BATCH
        return self.train_batch(max(batch_size, floor), generator)

    def split(self, name: str) -> Tensor:
        """The held-out set ``validation`` or ``test``."""
        if name not in SPLITS:
            raise ValueError(f"split: {name!r} is not one of: {', '.join(SPLITS)}")
        return self.validation if name == "validation" else self.heldout

    def heldout_chunks(self, batch_size: int, limit: int | None = None, *, split: str = "test") -> list[Tensor]:
        """The held-out ``split`` (or its first ``limit`` samples) in chunks on the run's device."""
        data = self.split(split) if limit is None else self.split(split)[:limit]
        return [c.to(self.device) for c in data.split(max(1, int(batch_size)))]
