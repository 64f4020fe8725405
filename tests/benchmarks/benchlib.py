"""Shared pieces of the benchmark suites: the ``Suite`` contract, result tables, timing statistics, machine info.

A suite is a module ``tests/benchmarks/<anything>.py`` that defines a top-level ``SUITE = Suite(...)``; ``run.py``
finds it by reading each module's source for that assignment (helper modules such as this one are never
imported by discovery). Suite modules import this one as ``benchlib`` (``run.py`` and the tests put
``tests/benchmarks`` on ``sys.path``; the folder is not a package).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata


@dataclass
class Table:
    """A Markdown table: a title line, column headers and rows of already formatted cells."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def to_markdown(self) -> str:
        head = "| " + " | ".join(self.columns) + " |"
        rule = "|" + "|".join("---" for _ in self.columns) + "|"
        body = ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join([f"**{self.title}**", "", head, rule, *body])


@dataclass
class SuiteResult:
    """What a suite hands back to ``run.py``: setting lines, tables and free-form notes (Markdown)."""

    settings: dict[str, str] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Suite:
    """A benchmark suite: a name for ``--suite``, a section title, its runner and optional CLI options.

    ``add_arguments`` receives an argument group of the shared parser; suite options should carry a prefix
    (``--flows-widths``) so that suites never clash.
    """

    name: str
    title: str
    run: Callable[[argparse.Namespace], SuiteResult]
    add_arguments: Callable[[argparse._ArgumentGroup], None] | None = None
    packages: Sequence[str] = ()  # distributions whose versions the section reports


def median_iqr(values: Sequence[float]) -> tuple[float, float]:
    """Median and inter-quartile range (Q3 − Q1, exclusive method) of at least one value."""
    if len(values) < 2:
        return float(values[0]), 0.0
    q1, _, q3 = statistics.quantiles(values, n=4)
    return statistics.median(values), q3 - q1


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info(packages: Sequence[str] = ()) -> dict[str, str]:
    """CPU model, core count, Python, torch (with its thread count) and the versions of ``packages``."""
    import torch

    info = {
        "CPU": cpu_model(),
        "cores": str(os.cpu_count()),
        "Python": platform.python_version(),
        "torch": f"{torch.__version__} (intra-op threads now: {torch.get_num_threads()})",
    }
    for name in packages:
        info[name] = package_version(name)
    return info
