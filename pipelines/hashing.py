"""Canonical JSON, the config hash and derived seeds.

``config_hash`` is the sha256 of the canonical JSON (sorted keys, no spaces, lists) of a resolved run
config *without* ``train.seed`` and ``resources``: seeds of one configuration share a hash so they aggregate
on the leaderboard, and resources (CPUs, GPUs, retries) decide where a run goes, not what it computes.
"""

from __future__ import annotations

import copy
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
    stripped = copy.deepcopy(config)
    stripped.pop("resources", None)
    stripped.get("train", {}).pop("seed", None)
    return sha256_hex(canonical_json(stripped))


def derive_seed(base_seed: int, config_hash: str, repeat: int) -> int:
    """Run seed in [0, 2**31): the first 4 bytes of sha256(f"{base_seed}:{config_hash}:{repeat}")."""
    digest = hashlib.sha256(f"{base_seed}:{config_hash}:{repeat}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 2**31
