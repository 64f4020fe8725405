"""Checkpoint files of one run: ``<run_dir>/checkpoints/step_{step:08d}.pt`` plus ``best_step_{step:08d}.pt``.

Writes are atomic (temporary file in the same folder, fsync, ``os.replace``) so that a worker killed while
saving never leaves a truncated checkpoint behind. The last ``KEEP_LAST`` step checkpoints are kept, and one
"best" file holding the evaluated (EMA, when used) weights of the best evaluation so far.

A folder may be *mirrored* (:func:`mirrored`): after each file is written its mirror's ``saved(path)`` is called
(the run's remote storage uploads it), and ``removed(path)`` after an old one is deleted, new before old, so the
mirror always holds a complete newest checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

KEEP_LAST = 2
_STEP_RE = re.compile(r"^step_(\d{8})\.pt$")
_BEST_RE = re.compile(r"^best_step_(\d{8})\.pt$")


@dataclass(frozen=True)
class CheckpointFile:
    step: int
    path: Path

    @property
    def kind(self) -> str:
        """``best`` for the best-evaluation file, ``step`` for a resumable step checkpoint."""
        return "best" if _BEST_RE.match(self.path.name) else "step"

    def describe(self) -> dict[str, Any]:
        """The RunResult entry: step, kind, file URI and sha256 of the bytes on disk."""
        return {
            "step": self.step,
            "kind": self.kind,
            "uri": self.path.resolve().as_uri(),
            "sha256": sha256_file(self.path),
        }


class Mirror(Protocol):
    """Receives the checkpoint files of a folder as they are written and deleted."""

    def saved(self, path: Path) -> None: ...

    def removed(self, path: Path) -> None: ...


_MIRRORS: dict[Path, Mirror] = {}


@contextmanager
def mirrored(folder: Path, mirror: Mirror) -> Iterator[None]:
    """While the block runs, every checkpoint written to (or deleted from) ``folder`` is passed to ``mirror``."""
    key = folder.resolve()
    _MIRRORS[key] = mirror
    try:
        yield
    finally:
        _MIRRORS.pop(key, None)


def _mirror_of(folder: Path) -> Mirror | None:
    return _MIRRORS.get(folder.resolve()) if _MIRRORS else None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _listed(folder: Path, pattern: re.Pattern[str]) -> list[CheckpointFile]:
    if not folder.is_dir():
        return []
    found = [(pattern.match(p.name), p) for p in folder.iterdir()]
    return sorted((CheckpointFile(int(m.group(1)), p) for m, p in found if m), key=lambda c: c.step)


def step_checkpoints(folder: Path) -> list[CheckpointFile]:
    """The step checkpoints in ``folder``, oldest first."""
    return _listed(folder, _STEP_RE)


def best_checkpoint(folder: Path) -> CheckpointFile | None:
    """The best-weights file, if one was written."""
    found = _listed(folder, _BEST_RE)
    return found[-1] if found else None


def save_step(folder: Path, step: int, state: dict[str, Any]) -> CheckpointFile:
    """Write the step checkpoint, then delete step checkpoints older than the last ``KEEP_LAST``."""
    path = folder / f"step_{step:08d}.pt"
    atomic_save(state, path)
    mirror = _mirror_of(folder)
    if mirror is not None:
        mirror.saved(path)
    for old in step_checkpoints(folder)[:-KEEP_LAST]:
        old.path.unlink(missing_ok=True)
        if mirror is not None:
            mirror.removed(old.path)
    return CheckpointFile(step, path)


def save_best(folder: Path, step: int, state: dict[str, Any]) -> CheckpointFile:
    """Write the best-weights file for ``step`` and remove the previous one."""
    path = folder / f"best_step_{step:08d}.pt"
    atomic_save(state, path)
    mirror = _mirror_of(folder)
    if mirror is not None:
        mirror.saved(path)
    for old in _listed(folder, _BEST_RE):
        if old.path != path:
            old.path.unlink(missing_ok=True)
            if mirror is not None:
                mirror.removed(old.path)
    return CheckpointFile(step, path)


def load_latest(folder: Path, map_location: torch.device | str = "cpu") -> tuple[CheckpointFile, dict[str, Any]] | None:
    """The newest readable step checkpoint and its contents (an unreadable newest one falls back to older)."""
    for ckpt in reversed(step_checkpoints(folder)):
        try:
            return ckpt, torch.load(ckpt.path, map_location=map_location, weights_only=False)
        except Exception:  # a damaged file: try the previous one
            continue
    return None


def parse_name(name: str) -> tuple[str, int] | None:
    """``("step", n)`` or ``("best", n)`` for a checkpoint file name, None for any other name."""
    for kind, pattern in (("step", _STEP_RE), ("best", _BEST_RE)):
        m = pattern.match(name)
        if m:
            return kind, int(m.group(1))
    return None
