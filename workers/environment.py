"""What a result depends on besides its config and seed: the code version and the environment fingerprint.

``environment_fingerprint()`` is a flat dict of strings and booleans — Python, torch, NumPy, Ray and nflab versions,
the BLAS/LAPACK libraries torch and NumPy were built with, the CPU model and a hash of its flags, CUDA/cuDNN and
the GPU models when CUDA is available, and the settings that decide whether torch is deterministic. Two runs
whose fingerprints are equal ran the same binaries on the same kind of machine; PyTorch promises bit-identical
results only then (and not across releases or platforms). ``fingerprint_diff`` names what changed.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def _cpu() -> tuple[str, str]:
    """(CPU model, ``sha256[:16] of the sorted flags (count)``) from /proc/cpuinfo, or platform's answer."""
    model, flags = platform.processor() or platform.machine(), ""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return model, ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = " ".join(sorted(value.split()))
        if key == "" and flags:  # the first processor's block is enough
            break
    digest = hashlib.sha256(flags.encode()).hexdigest()[:16] if flags else ""
    return model, f"{digest} ({len(flags.split())})" if flags else ""


def _blas() -> dict[str, str]:
    import numpy as np
    import torch

    out: dict[str, str] = {}
    config = torch.__config__.show()
    for key in ("BLAS_INFO", "LAPACK_INFO"):
        found = re.search(rf"{key}=([^,\s]+)", config)
        out[f"torch_{key.split('_')[0].lower()}"] = found.group(1) if found else "unknown"
    out["torch_mkl"] = str(torch.backends.mkl.is_available())
    try:
        deps = np.show_config(mode="dicts").get("Build Dependencies", {})  # type: ignore[union-attr]
        out["numpy_blas"] = str((deps.get("blas") or {}).get("name", "unknown"))
        out["numpy_lapack"] = str((deps.get("lapack") or {}).get("name", "unknown"))
    except (TypeError, AttributeError):  # an older NumPy without mode="dicts"
        out["numpy_blas"] = out["numpy_lapack"] = "unknown"
    return out


def environment_fingerprint() -> dict[str, Any]:
    """The environment of this process (module docstring); every value is a string or a bool."""
    import torch

    model, flags = _cpu()
    fp: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "torch": torch.__version__,
        "numpy": _version("numpy"),
        "ray": _version("ray"),
        "nflab": _version("nflab"),
        **_blas(),
        "cpu": model,
        "cpu_flags": flags,
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cuda": str(torch.version.cuda or "none"),
    }
    if torch.cuda.is_available():
        fp["cudnn"] = str(torch.backends.cudnn.version())
        fp["gpus"] = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        fp["tf32_matmul"] = bool(torch.backends.cuda.matmul.allow_tf32)
        fp["cublas_workspace"] = os.environ.get("CUBLAS_WORKSPACE_CONFIG", "")
    return fp


def fingerprint_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """``key: old → new`` for every entry that differs (missing entries shown as ``—``), sorted by key."""
    keys = sorted(set(before) | set(after))
    return [f"{k}: {before.get(k, '—')} → {after.get(k, '—')}" for k in keys if before.get(k, "—") != after.get(k, "—")]


def code_version() -> dict[str, Any]:
    """The code that runs: nflab's package version always; the git commit and dirty flag when nflab runs from a
    checkout (``commit`` None otherwise)."""
    root = Path(__file__).resolve().parents[1]  # the checkout holding workers/ (and platform/, flows/...)
    out: dict[str, Any] = {"version": _version("nflab"), "commit": None, "dirty": None}
    if not (root / ".git").exists():
        return out
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return out
    out.update(commit=commit or None, dirty=bool(status.strip()))
    return out


def code_version_label(version: Mapping[str, Any] | None = None) -> str:
    """:func:`code_version` as one short label for a run row: ``0.1.0`` or ``0.1.0+g1a2b3c4d5e6f`` (``.dirty`` with
    uncommitted changes)."""
    v = code_version() if version is None else version
    label = str(v.get("version") or "unknown")
    if v.get("commit"):
        label += f"+g{str(v['commit'])[:12]}" + (".dirty" if v.get("dirty") else "")
    return label[:100]
