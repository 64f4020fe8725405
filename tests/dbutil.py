"""Helpers shared by the SQLite and PostgreSQL store tests: table snapshots and concurrent writers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import create_engine, inspect, text

from nflab.db_models import TABLES


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every nflab table there is (an older schema lacks the newer tables), ordered by id."""
    engine = create_engine(url)
    try:
        present = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            return {
                t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY id"))]
                for t in TABLES
                if t in present
            }
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def run_concurrently(target: Callable[..., None], args: Iterable[tuple[Any, ...]]) -> None:
    """Start one thread per argument tuple at once and wait for all of them."""
    threads = [threading.Thread(target=target, args=a) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def same_rows_older_schema(newer: dict[str, list[tuple[Any, ...]]], older: dict[str, list[tuple[Any, ...]]]) -> bool:
    """True when ``older`` (a snapshot after a downgrade) holds every row of ``newer``, each cut to the older
    table's columns (migrations append their columns, so an older row is a prefix of the newer one), in every table
    the older schema has."""
    return all(
        len(newer[t]) == len(older[t]) and all(n[: len(o)] == o for n, o in zip(newer[t], older[t])) for t in older
    )
