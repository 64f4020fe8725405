"""CIFAR-10 reader for the python pickle batches under ``<root>/cifar-10-batches-py/``.

Each batch is a pickle dict: b"data" uint8 [N, 3072] channel-major (1024 R, 1024 G, 1024 B, rows of 32)
and b"labels" (N ints). Unpickling is restricted to the numpy classes an array needs.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import bad_format, missing_file

_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST = ("test_batch",)
_HOW = (
    "the CIFAR-10 python version, cifar-10-python.tar.gz from cs.toronto.edu/~kriz/cifar.html, "
    "unpacked under $NFLAB_DATA"
)
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the globals needed to rebuild numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return super().find_class(module, name)


def _get(batch: dict, key: str, path: Path) -> Any:
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise bad_format(path, f"missing key b{key!r}")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise missing_file("cifar10", path, _HOW)
    try:
        with path.open("rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # pickle raises many types on garbage input
        raise bad_format(path, f"not a CIFAR-10 pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict):
        raise bad_format(path, f"expected a pickled dict, got {type(batch).__name__}")
    data = np.asarray(_get(batch, "data", path))
    labels = np.asarray(_get(batch, "labels", path))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise bad_format(path, f"data must be uint8 [N, 3072], got {data.dtype} {list(data.shape)}")
    if labels.shape != (data.shape[0],):
        raise bad_format(path, f"labels shape {list(labels.shape)} does not match {data.shape[0]} images")
    return data, labels


def read_cifar10(root: Path, split: str) -> tuple[Tensor, Tensor]:
    """Return (images uint8 [N, 3, 32, 32], labels int64 [N]) for ``split`` in {train, test}."""
    folder = root / "cifar-10-batches-py"
    batches = [_read_batch(folder / name) for name in (_TRAIN if split == "train" else _TEST)]
    data = np.concatenate([b[0] for b in batches]) if len(batches) > 1 else batches[0][0]
    labels = np.concatenate([b[1] for b in batches]).astype(np.int64)
    return torch.from_numpy(data.reshape(-1, 3, 32, 32)), torch.from_numpy(labels)
