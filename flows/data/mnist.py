"""MNIST reader for the IDX files (optionally gzipped) under ``<root>/mnist/``.

IDX: big-endian magic 0x0000 08 nd (08 = uint8, nd = number of dims), nd big-endian int32 sizes, raw bytes.
Images have magic 0x00000803 (N, rows, cols); labels 0x00000801 (N,).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .errors import bad_format, missing_file

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_HOW = "the four MNIST IDX files from yann.lecun.com/exdb/mnist, raw or .gz, placed under <data root>/mnist/"


def _locate(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise missing_file("mnist", folder / name, f"or '{name}.gz'; {_HOW}")


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise bad_format(path, f"not a valid gzip stream ({exc})") from None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse one IDX file of unsigned bytes with the expected magic; return its array (a copy)."""
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise bad_format(path, f"only {len(raw)} bytes, shorter than the 4-byte IDX magic")
    (found,) = struct.unpack(">I", raw[:4])
    if found != magic:
        raise bad_format(path, f"bad IDX magic 0x{found:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise bad_format(path, f"truncated IDX header ({len(raw)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}i", raw[4:header])
    expected = header + math.prod(dims)
    if len(raw) != expected:
        raise bad_format(path, f"size {len(raw)} bytes, expected {expected} for dims {dims} (truncated?)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_mnist(root: Path, split: str) -> tuple[Tensor, Tensor]:
    """Return (images uint8 [N, 1, 28, 28], labels int64 [N]) for ``split`` in {train, test}."""
    folder = root / "mnist"
    image_name, label_name = _FILES[split]
    image_path, label_path = _locate(folder, image_name), _locate(folder, label_name)
    images = read_idx(image_path, IMAGES_MAGIC)
    labels = read_idx(label_path, LABELS_MAGIC)
    if labels.shape[0] != images.shape[0]:
        raise bad_format(label_path, f"{labels.shape[0]} labels but {images.shape[0]} images in {image_path}")
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
