"""A run's folder in run storage: fetched before the run, mirrored while it trains, published when it ends.

Local storage (a folder, or a mount shared by the nodes) is the run folder itself and nothing is copied. Remote
storage (``s3://``…) is mirrored through a node-local scratch folder (``nflab.workers.storage``):

- :meth:`RunFiles.fetch` before training: ``run.json`` (the MLflow run to continue), ``train.log``, and the
  step checkpoints newer than the local ones plus the best-weights file, so that a run retried on any node resumes
  from the newest checkpoint in storage, bit-identically;
- as a checkpoint mirror (:func:`nflab.workers.checkpoint.mirrored`): ``train.log`` and ``run.json``, then each new
  checkpoint are uploaded (atomic: temporary key, then move); deleted ones are deleted there too;
- :meth:`RunFiles.publish` at the end: the run's artifacts (config, figures, analysis files, log); their
  storage URIs are what the RunResult records.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from . import checkpoint as ckpt
from .storage import Folder, join

SIDE_FILES = ("run.json", "train.log")


class RunFiles:
    """The storage folder ``<workdir>/<run_key>`` of one run and its local working folder :attr:`run_dir`."""

    def __init__(self, workdir: str | Path, run_key: str) -> None:
        self.folder = Folder.of(join(str(workdir), run_key))
        self.run_dir = self.folder.local
        self.checkpoints = self.folder.child("checkpoints")

    @property
    def remote(self) -> bool:
        return self.folder.remote

    def fetch(self) -> int | None:
        """Bring the newest state of the run from storage into :attr:`run_dir`; the newest step fetched (or None)."""
        if not self.remote:
            return None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for name in SIDE_FILES:
            self.folder.get(name, self.run_dir / name)
        local_dir = self.run_dir / "checkpoints"
        have = {c.step for c in ckpt.step_checkpoints(local_dir)}
        newest_local = max(have, default=-1)
        found = [(ckpt.parse_name(n), n) for n in self.checkpoints.names()]
        steps = sorted((p[1], n) for p, n in found if p and p[0] == "step")
        newest = None
        for step, name in steps[-ckpt.KEEP_LAST :]:
            if step > newest_local and self.checkpoints.get(name, local_dir / name):
                newest = step
        best = sorted((p[1], n) for p, n in found if p and p[0] == "best")
        if best and not (local_dir / best[-1][1]).exists():
            for old in local_dir.glob("best_step_*.pt"):
                old.unlink(missing_ok=True)
            self.checkpoints.get(best[-1][1], local_dir / best[-1][1])
        return newest

    # the checkpoint mirror (nflab.workers.checkpoint.Mirror)
    def saved(self, path: Path) -> None:
        """Upload the log and ``run.json`` as they are now, then the new checkpoint (so storage never holds a
        checkpoint without the log that led to it)."""
        if not self.remote:
            return
        self._put_side_files()
        self.checkpoints.put(path)

    def removed(self, path: Path) -> None:
        """Delete the storage copy of a checkpoint deleted locally."""
        if self.remote:
            self.checkpoints.delete(path.name)

    def _put_side_files(self) -> None:
        for name in SIDE_FILES:
            local = self.run_dir / name
            if local.is_file():
                self.folder.put(local)

    def publish(self, paths: list[Path]) -> list[str]:
        """Copy artifacts (files under :attr:`run_dir`) into storage; their URIs, in order."""
        uris = []
        for path in paths:
            try:
                rel = path.resolve().relative_to(self.run_dir.resolve())
            except ValueError:  # a file outside the run folder keeps its name only
                rel = Path(path.name)
            target = self.folder.child(*rel.parts[:-1]) if len(rel.parts) > 1 else self.folder
            uris.append(target.put(path, rel.name) if self.remote else path.resolve().as_uri())
        if self.remote:
            self._put_side_files()
        return uris

    def checkpoint_uri(self, path: Path) -> str:
        """The storage URI of a local checkpoint file."""
        return self.checkpoints.uri_of(path.name)

    def drop_scratch(self) -> None:
        """Remove the local working copy of a remote run (storage holds everything)."""
        if self.remote:
            shutil.rmtree(self.run_dir, ignore_errors=True)
