"""Packaging guards: the `platform/` folder never shadows the stdlib, and every sub-package is distributed."""

from __future__ import annotations

import platform as stdlib_platform
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_platform_folder_is_not_a_package() -> None:
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert hasattr(stdlib_platform, "system")  # the stdlib module, not our folder


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    roots = {name: ROOT / folder for name, folder in config["package-dir"].items()}
    found = set()
    for name, folder in roots.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    assert found <= listed, f"missing from pyproject packages: {sorted(found - listed)}"


def test_flows_is_pure_pytorch() -> None:
    forbidden = ("ray", "mlflow", "optuna", "sqlalchemy", "alembic", "typer", "nflab.workers", "nflab.pipelines")
    for path in (ROOT / "flows").rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                module = stripped.split()[1]
                assert not module.startswith(forbidden), f"{path}: {stripped}"
                assert module != "nflab", f"{path}: {stripped}"
