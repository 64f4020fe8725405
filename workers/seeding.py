"""Seeds and random-number-generator state: derived sub-seeds, global seeding, capture/restore for checkpoints.

A run uses one seed. Independent streams (training data, held-out set, plots) get their own seeds derived by
hashing ``(seed, label)``, so that adding a stream never shifts another one.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import numpy as np
import torch


def derive_seed(seed: int, label: str) -> int:
    """A 63-bit seed for the stream ``label`` of a run seeded with ``seed`` (stable across processes)."""
    digest = hashlib.sha256(f"{int(seed)}:{label}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_generator(seed: int, label: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A dedicated torch generator for one stream of the run."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, label))


def capture_rng(data_generator: torch.Generator) -> dict[str, Any]:
    """Every RNG state the training loop depends on, for a checkpoint."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "data": data_generator.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], data_generator: torch.Generator) -> None:
    """Put back the RNG states saved by :func:`capture_rng`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    data_generator.set_state(state["data"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
