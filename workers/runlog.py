"""A run's own log file (``<run folder>/train.log``), appended across restarts; ``nflab logs RUN`` prints it."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ProgressFn = Callable[[str, int, int, dict], None]


class RunLog:
    """Timestamped lines: start/resume, progress every ``log_every`` steps, the outcome (with a traceback)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "train.log"

    def write(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        with self.path.open("a") as fh:
            fh.write(f"{stamp} {message}\n")

    def failure(self, error: str, exc: BaseException) -> None:
        self.write(f"failed: {error}")
        with self.path.open("a") as fh:
            fh.write("".join(traceback.format_exception(exc)))

    def wrap(self, progress: ProgressFn | None) -> ProgressFn:
        """A progress callback that also logs the step and its metrics."""

        def report(run_key: str, step: int, total: int, metrics: dict[str, Any]) -> None:
            shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, int | float))
            self.write(f"step {step}/{total} {shown}")
            if progress is not None:
                progress(run_key, step, total, metrics)

        return report
