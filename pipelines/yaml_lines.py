"""YAML with line numbers: parse text into plain data plus a map from location tuples to line numbers.

The loader is PyYAML's safe loader with one change: ``1e-3`` (no dot) reads as a float, as users expect,
instead of YAML 1.1's string.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from .errors import Invalid, one_line

_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class Loader(yaml.SafeLoader):
    """Safe loader that also reads ``1e-3`` and ``5E4`` as floats."""


Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _first in list(Loader.yaml_implicit_resolvers):
    Loader.yaml_implicit_resolvers[_first] = [
        r for r in Loader.yaml_implicit_resolvers[_first] if r[0] != "tag:yaml.org,2002:float"
    ]
Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))

Lines = dict[tuple[Any, ...], int]

MAX_VALUES = 100_000  # values of the document once aliases are expanded (a pipeline has a few hundred)
MAX_DEPTH = 64  # nesting of mappings and sequences


class YamlSyntaxError(ValueError):
    """Malformed YAML: ``line`` (1-based, 0 if unknown) and a one-line ``problem``."""

    def __init__(self, line: int, problem: str) -> None:
        self.line, self.problem = line, one_line(problem)
        super().__init__(f"line {line}: {self.problem}")


def parse_scalar(text: str) -> Any:
    """Parse one value as YAML (scalar or flow collection), e.g. ``5``, ``1e-3``, ``[64, 64]``, ``{a: 1}``."""
    try:
        return yaml.load(text, Loader=Loader)
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(0, _problem(exc)) from None


def parse_with_lines(text: str) -> tuple[Any, Lines]:
    """Return ``(data, lines)``; ``lines[('model', 'family')]`` is the 1-based line of that key.

    Sequence items are indexed by position (``('matrix', 'model.family', 1)``). The root is ``()``.
    Raises :class:`YamlSyntaxError` for malformed YAML and :class:`Invalid` for a duplicated key.
    """
    try:
        loader = Loader(text)
    except yaml.YAMLError as exc:  # the reader refuses NUL and other control characters up front
        raise YamlSyntaxError(0, _problem(exc)) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {(): 1}
        _check_expanded_size(node)
        data = loader.construct_document(node)
        lines: Lines = {(): node.start_mark.line + 1}
        _walk(node, (), lines, loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        raise YamlSyntaxError(mark.line + 1 if mark is not None else 0, _problem(exc)) from None
    except RecursionError:
        raise YamlSyntaxError(0, f"the document is nested too deeply (at most {MAX_DEPTH} levels)") from None
    finally:
        loader.dispose()
    return data, lines


def _check_expanded_size(root: yaml.Node) -> None:
    """Refuse alias bombs and cycles before anything is constructed: the number of values the document holds with
    every alias expanded (counted once per node, shared sub-trees by multiplication) and its nesting depth."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        line = node.start_mark.line + 1
        if key in open_nodes:
            raise YamlSyntaxError(line, "a recursive alias (an anchor used inside itself)")
        if depth > MAX_DEPTH:
            raise YamlSyntaxError(line, f"the document is nested too deeply (at most {MAX_DEPTH} levels)")
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item, depth + 1) for item in node.value)
        open_nodes.discard(key)
        if total > MAX_VALUES:
            raise YamlSyntaxError(line, f"the document expands to more than {MAX_VALUES:,} values (YAML aliases?)")
        sizes[key] = total
        return total

    size(root, 0)


def _problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    return f"{problem} ({context})" if context else str(problem)


def _walk(node: yaml.Node, loc: tuple[Any, ...], lines: Lines, loader: Loader) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = _key(key_node, loader)
            if key in seen:
                first = lines[(*loc, key)]
                line = key_node.start_mark.line + 1
                raise Invalid((*loc, key), f"{key!r} appears twice (first on line {first})", line=line)
            seen.add(key)
            lines[(*loc, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*loc, key), lines, loader)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*loc, index)] = item.start_mark.line + 1
            _walk(item, (*loc, index), lines, loader)


def _key(node: yaml.Node, loader: Loader) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_object(node)
    return repr(node.value)
