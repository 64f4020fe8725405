"""Errors raised by the dataset readers.

Both carry a one-line message: which dataset/file, what was expected, and what to do about it.
"""

from __future__ import annotations

import os


class DatasetFileError(FileNotFoundError):
    """A dataset file is missing; nothing is ever downloaded at run time."""


class DatasetFormatError(ValueError):
    """A dataset file exists but is malformed (bad magic, truncated, wrong size, missing key)."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def missing_file(dataset: str, path: str | os.PathLike, how: str) -> DatasetFileError:
    """Build the error for a missing file: dataset, exact expected path, where to get it."""
    return DatasetFileError(
        _one_line(f"{dataset}: expected file '{os.fspath(path)}' ({how}); nothing is downloaded at run time")
    )


def bad_format(path: str | os.PathLike, problem: str) -> DatasetFormatError:
    """Build the error for a malformed file: the file and what was wrong with it."""
    return DatasetFormatError(_one_line(f"malformed dataset file '{os.fspath(path)}': {problem}"))
