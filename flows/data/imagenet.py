"""Downsampled-ImageNet (32×32 / 64×64) reader for the npz batches.

train: ``<root>/Imagenet{S}_train_npz/train_data_batch_{1..10}.npz``;
test: ``<root>/Imagenet{S}_val_npz/val_data.npz``.
Each npz holds "data" uint8 [N, 3·S·S] (channel-major like CIFAR) and "labels" in 1..1000 (made 0-based).
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .errors import bad_format, missing_file


def _how(size: int) -> str:
    return (
        f"the npz version of Imagenet{size} from image-net.org/download-images (Downsampled ImageNet), "
        f"unzipped under $NFLAB_DATA"
    )


def _read_npz(path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise missing_file(f"imagenet{size}", path, _how(size))
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise bad_format(path, f"not a readable npz archive ({type(exc).__name__}: {exc})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise bad_format(path, "not an npz archive (a single .npy array)")
    with loaded as npz:
        for key in ("data", "labels"):
            if key not in npz.files:
                raise bad_format(path, f"missing key '{key}' (found {sorted(npz.files)})")
        try:
            data, labels = npz["data"], np.asarray(npz["labels"]).reshape(-1)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise bad_format(path, f"corrupt npz member ({type(exc).__name__}: {exc})") from None
    width = 3 * size * size
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != width:
        raise bad_format(path, f"data must be uint8 [N, {width}], got {data.dtype} {list(data.shape)}")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        got = f"{labels.dtype} {list(labels.shape)}"
        raise bad_format(path, f"labels must be {data.shape[0]} integers, got {got}")
    if labels.size and labels.min() < 1:
        raise bad_format(path, f"labels must be 1-based, found {labels.min()}")
    return data, labels


def read_imagenet(root: Path, split: str, size: int) -> tuple[Tensor, Tensor]:
    """Return (images uint8 [N, 3, S, S], labels int64 [N], 0-based) for S = ``size`` in {32, 64}."""
    if split == "train":
        folder = root / f"Imagenet{size}_train_npz"
        paths = [folder / f"train_data_batch_{i}.npz" for i in range(1, 11)]
    else:
        paths = [root / f"Imagenet{size}_val_npz" / "val_data.npz"]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise missing_file(f"imagenet{size}", missing[0], _how(size))
    parts = [_read_npz(p, size) for p in paths]
    data = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]).astype(np.int64) - 1
    del parts
    return torch.from_numpy(data.reshape(-1, 3, size, size)), torch.from_numpy(labels)
