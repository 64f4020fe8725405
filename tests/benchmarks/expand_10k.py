"""Planning a 10 000-run campaign: load + validate + expand ``dry_run_10k.yaml`` in-process (what ``nflab run
--dry-run`` and every ``nflab run`` pay before anything runs), wall seconds and peak RSS.

``python tests/benchmarks/expand_10k.py [tests/benchmarks/dry_run_10k.yaml]`` (results in RESULTS.md).
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

DEFAULT = Path(__file__).with_name("dry_run_10k.yaml")


def main() -> None:
    started = time.perf_counter()
    from nflab.pipelines import expand, load_pipeline

    imported = time.perf_counter()
    runs = expand(load_pipeline(sys.argv[1] if len(sys.argv) > 1 else DEFAULT))
    done = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"runs {len(runs)} import {imported - started:.2f}s load+expand {done - imported:.2f}s peak RSS {peak:.0f} MiB"
    )


if __name__ == "__main__":
    main()
