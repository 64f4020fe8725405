"""Tests for nflab.flows.data image readers: files in the real formats are written into tmp_path."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from nflab.flows import data
from nflab.flows.data import DatasetFileError, DatasetFormatError, ImageSet, load_images


def _pattern(n: int, c: int, s: int, seed: int) -> np.ndarray:
    """Distinct, position-dependent uint8 pixels [n, c, s, s]."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, c, s, s), dtype=np.uint8)


def _assert_one_line(exc: pytest.ExceptionInfo, *needles: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg


# ----------------------------------------------------------------------------------------------- digits


def test_digits() -> None:
    train, test = load_images("digits", "train"), load_images("digits", "test")
    assert isinstance(train, ImageSet)
    assert train.shape == test.shape == (1, 8, 8)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.n_bins == test.n_bins == 17
    assert len(train) + len(test) == 1797 and len(test) == round(0.2 * 1797)
    assert int(train.images.max()) == 16 and int(train.images.min()) == 0
    again = load_images("digits", "train")
    assert torch.equal(train.images, again.images) and torch.equal(train.labels, again.labels)
    # the two splits are disjoint and together are sklearn's set
    from sklearn.datasets import load_digits

    full = torch.as_tensor(load_digits().images).to(torch.uint8).flatten(1)
    both = torch.cat([train.images, test.images]).flatten(1)
    key = lambda t: sorted(map(bytes, t.numpy()))  # noqa: E731
    assert key(both) == key(full)


def test_bad_name_and_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="allowed: digits, mnist, cifar10, imagenet32, imagenet64"):
        load_images("svhn")
    with pytest.raises(ValueError, match="allowed: train, test"):
        load_images("digits", "valid")


def test_default_data_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NFLAB_DATA", raising=False)
    monkeypatch.delenv("NFLAB_HOME", raising=False)
    assert data.default_data_root() == Path(".nflab/data")
    monkeypatch.setenv("NFLAB_HOME", str(tmp_path / "home"))
    assert data.default_data_root() == tmp_path / "home" / "data"
    monkeypatch.setenv("NFLAB_DATA", str(tmp_path / "d"))
    assert data.default_data_root() == tmp_path / "d"
    # load_images uses it when root is omitted
    with pytest.raises(DatasetFileError) as exc:
        load_images("cifar10")
    _assert_one_line(exc, str(tmp_path / "d" / "cifar-10-batches-py" / "data_batch_1"))


# ----------------------------------------------------------------------------------------------- mnist


def _idx(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}i", *array.shape) + array.tobytes()


def _write_mnist(root: Path, gz: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder = root / "mnist"
    folder.mkdir(parents=True)
    written = {}
    for split, prefix, n in (("train", "train", 3), ("test", "t10k", 2)):
        images = _pattern(n, 1, 28, seed=n)[:, 0]
        labels = np.arange(n, dtype=np.uint8) + 5
        for name, blob in (
            (f"{prefix}-images-idx3-ubyte", _idx(images, 0x803)),
            (f"{prefix}-labels-idx1-ubyte", _idx(labels, 0x801)),
        ):
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(blob))
            else:
                (folder / name).write_bytes(blob)
        written[split] = (images, labels)
    return written


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_roundtrip(tmp_path: Path, gz: bool) -> None:
    written = _write_mnist(tmp_path, gz=gz)
    for split, (images, labels) in written.items():
        ds = load_images("mnist", split, root=tmp_path)
        assert ds.shape == (1, 28, 28) and len(ds) == len(images) and ds.n_bins == 256
        assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
        assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
        assert ds.images[1, 0, 27, 3].item() == images[1, 27, 3]
        assert ds.labels.tolist() == labels.tolist()


def test_mnist_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetFileError) as exc:
        load_images("mnist", "test", root=tmp_path)
    assert isinstance(exc.value, FileNotFoundError)
    _assert_one_line(exc, "mnist", str(tmp_path / "mnist" / "t10k-images-idx3-ubyte"))


def test_mnist_bad_magic_and_truncation(tmp_path: Path) -> None:
    _write_mnist(tmp_path)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte"
    blob = path.read_bytes()
    path.write_bytes(blob[:-10])
    with pytest.raises(DatasetFormatError) as exc:
        load_images("mnist", "train", root=tmp_path)
    _assert_one_line(exc, str(path), "truncated")
    path.write_bytes(struct.pack(">I", 0x801) + blob[4:])
    with pytest.raises(DatasetFormatError) as exc:
        load_images("mnist", "train", root=tmp_path)
    _assert_one_line(exc, str(path), "magic")
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DatasetFormatError) as exc:
        load_images("mnist", "train", root=tmp_path)
    _assert_one_line(exc, str(path))


def test_mnist_bad_gzip(tmp_path: Path) -> None:
    _write_mnist(tmp_path, gz=True)
    path = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    path.write_bytes(b"this is not gzip")
    with pytest.raises(DatasetFormatError) as exc:
        load_images("mnist", "train", root=tmp_path)
    _assert_one_line(exc, str(path))


# ----------------------------------------------------------------------------------------------- cifar10


def _write_cifar(root: Path) -> dict[str, tuple[np.ndarray, list[int]]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    written = {}
    for i, name in enumerate(names):
        images = _pattern(2, 3, 32, seed=100 + i)
        labels = [i % 10, (i + 3) % 10]
        batch = {b"batch_label": name.encode(), b"data": images.reshape(2, 3072), b"labels": labels}
        with (folder / name).open("wb") as f:
            pickle.dump(batch, f, protocol=2)
        written[name] = (images, labels)
    return written


def test_cifar_roundtrip(tmp_path: Path) -> None:
    written = _write_cifar(tmp_path)
    train = load_images("cifar10", "train", root=tmp_path)
    assert train.shape == (3, 32, 32) and len(train) == 10 and train.n_bins == 256
    expected = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert torch.equal(train.images, torch.from_numpy(expected))
    assert train.labels.tolist() == [y for i in range(1, 6) for y in written[f"data_batch_{i}"][1]]
    # channel-major layout: flat index c·1024 + h·32 + w holds pixel (c, h, w)
    flat = written["data_batch_3"][0].reshape(2, 3072)
    assert train.images[5, 2, 7, 30].item() == flat[1, 2 * 1024 + 7 * 32 + 30]
    test = load_images("cifar10", "test", root=tmp_path)
    assert torch.equal(test.images, torch.from_numpy(written["test_batch"][0]))
    assert test.labels.dtype == torch.int64 and test.labels.tolist() == written["test_batch"][1]


def test_cifar_missing_and_malformed(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_4"
    path.unlink()
    with pytest.raises(DatasetFileError) as exc:
        load_images("cifar10", "train", root=tmp_path)
    _assert_one_line(exc, "cifar10", str(path), "nothing is downloaded")
    path.write_bytes(b"garbage, not a pickle")
    with pytest.raises(DatasetFormatError) as exc:
        load_images("cifar10", "train", root=tmp_path)
    _assert_one_line(exc, str(path))
    with path.open("wb") as f:
        pickle.dump({b"labels": [1, 2]}, f)
    with pytest.raises(DatasetFormatError) as exc:
        load_images("cifar10", "train", root=tmp_path)
    _assert_one_line(exc, str(path), "data")
    with path.open("wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}, f)
    with pytest.raises(DatasetFormatError) as exc:
        load_images("cifar10", "train", root=tmp_path)
    _assert_one_line(exc, str(path), "3072")


def test_cifar_refuses_arbitrary_pickles(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    with path.open("wb") as f:
        pickle.dump({b"data": Path("x"), b"labels": []}, f)
    with pytest.raises(DatasetFormatError) as exc:
        load_images("cifar10", "test", root=tmp_path)
    _assert_one_line(exc, str(path), "not allowed")


# ----------------------------------------------------------------------------------------------- imagenet


def _write_imagenet(root: Path, size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    train_dir, val_dir = root / f"Imagenet{size}_train_npz", root / f"Imagenet{size}_val_npz"
    train_dir.mkdir(parents=True)
    val_dir.mkdir(parents=True)
    written = {}
    for i in range(1, 12):
        n = 1 + i % 3
        images = _pattern(n, 3, size, seed=size + i)
        labels = np.arange(n) + i  # 1-based, up to 13
        name = f"train_data_batch_{i}" if i <= 10 else "val_data"
        folder = train_dir if i <= 10 else val_dir
        np.savez(folder / f"{name}.npz", data=images.reshape(n, -1), labels=labels.tolist(), mean=np.zeros(3))
        written[name] = (images, labels)
    return written


@pytest.mark.parametrize("size", [32, 64])
def test_imagenet_roundtrip(tmp_path: Path, size: int) -> None:
    written = _write_imagenet(tmp_path, size)
    name = f"imagenet{size}"
    train = load_images(name, "train", root=tmp_path)
    parts = [written[f"train_data_batch_{i}"] for i in range(1, 11)]
    assert train.shape == (3, size, size) and train.n_bins == 256
    assert len(train) == sum(len(p[0]) for p in parts)
    assert torch.equal(train.images, torch.from_numpy(np.concatenate([p[0] for p in parts])))
    assert train.labels.tolist() == (np.concatenate([p[1] for p in parts]) - 1).tolist()  # 0-based
    assert train.labels.min().item() == 0 and train.labels.dtype == torch.int64
    val_images, val_labels = written["val_data"]
    flat = val_images.reshape(len(val_images), -1)
    test = load_images(name, "test", root=tmp_path)
    assert torch.equal(test.images, torch.from_numpy(val_images))
    assert test.images[0, 1, 3, size - 1].item() == flat[0, size * size + 3 * size + size - 1]
    assert test.labels.tolist() == (val_labels - 1).tolist()


def test_imagenet_missing_and_malformed(tmp_path: Path) -> None:
    _write_imagenet(tmp_path, 32)
    last = tmp_path / "Imagenet32_train_npz" / "train_data_batch_10.npz"
    last.unlink()
    with pytest.raises(DatasetFileError) as exc:
        load_images("imagenet32", "train", root=tmp_path)
    _assert_one_line(exc, "imagenet32", str(last))
    with pytest.raises(DatasetFileError) as exc:
        load_images("imagenet64", "test", root=tmp_path)
    _assert_one_line(exc, "imagenet64", str(tmp_path / "Imagenet64_val_npz" / "val_data.npz"))

    val = tmp_path / "Imagenet32_val_npz" / "val_data.npz"
    np.savez(val, labels=np.array([1, 2]))
    with pytest.raises(DatasetFormatError) as exc:
        load_images("imagenet32", "test", root=tmp_path)
    _assert_one_line(exc, str(val), "'data'")
    np.savez(val, data=np.zeros((2, 3 * 64 * 64), np.uint8), labels=np.array([1, 2]))
    with pytest.raises(DatasetFormatError) as exc:
        load_images("imagenet32", "test", root=tmp_path)
    _assert_one_line(exc, str(val), "3072")
    val.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(DatasetFormatError) as exc:
        load_images("imagenet32", "test", root=tmp_path)
    _assert_one_line(exc, str(val))
