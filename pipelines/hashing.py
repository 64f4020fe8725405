"""Canonical JSON, the config hash and derived seeds.

``config_hash`` is the sha256 of the canonical JSON (sorted keys, no spaces, lists) of a resolved run
config *without* ``train.seed`` and ``resources``: seeds of one configuration share a hash so they aggregate
on the leaderboard, and resources (CPUs, GPUs, retries) decide where a run goes, not what it computes.

A run's seed depends on (``train.seed``, repeat) only, never on the configuration: every configuration of a
campaign with the same seed sees the same data stream (toy samples, batch order, validation and test sets are
drawn from generators derived from the seed), so two families are compared on the same data — paired — and
changing e.g. ``train.steps`` keeps the seeds. Before this rule (stores written before migration 0004) the seed
also hashed the config hash; such runs keep their recorded seeds and still show on the leaderboard, but they
pair with nothing, and re-running their pipeline starts a new campaign (its fingerprint holds the seeds).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, ``(",", ":")`` separators, tuples as lists."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(text: str) -> str:
    """Hex sha256 of UTF-8 ``text``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the canonical config minus ``train.seed`` and ``resources`` (see module docstring)."""
    stripped = {k: v for k, v in config.items() if k != "resources"}
    if "train" in stripped:
        stripped["train"] = {k: v for k, v in stripped["train"].items() if k != "seed"}
    return sha256_hex(canonical_json(stripped))


def derive_seed(base_seed: int, repeat: int) -> int:
    """Run seed in [0, 2**31): the first 4 bytes of sha256(f"seed:{base_seed}:{repeat}") — the same for every
    configuration (see module docstring)."""
    digest = hashlib.sha256(f"seed:{base_seed}:{repeat}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 2**31
