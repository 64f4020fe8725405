"""The README's Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    for code in blocks:
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})


def test_readme_pipeline_examples_load() -> None:
    """Every YAML example of the README is a valid pipeline: it expands into runs without an error."""
    from nflab.pipelines import expand, load_pipeline_text

    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no pipeline example"
    for text in blocks:
        assert expand(load_pipeline_text(text, "README.md"))


def test_readme_family_table_lists_every_family() -> None:
    import nflab.flows as F

    table = re.findall(r"^\| `(\w+)` \|", README.read_text(), flags=re.M)
    assert set(F.available()) <= set(table)
