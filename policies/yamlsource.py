"""Read YAML keeping each node's line, so validation errors can point at ``file:line``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from policies.errors import PolicyError, PolicyFileError

PathKey = tuple[str | int, ...]


@dataclass
class LineMap:
    """Line (1-based) of every mapping key and sequence item, by path from the document root."""

    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """Line of ``path`` or of its nearest ancestor that exists (a missing key reports its parent)."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)


def format_path(path: Sequence[str | int]) -> str:
    """``("classes", 3, "actions", 0, "risk")`` -> ``classes[3].actions[0].risk``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_yaml(text: str, file: str) -> tuple[Any, LineMap]:
    """Parse one YAML document with the safe loader; duplicate keys are errors, not silent overrides."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise PolicyError(f"not valid YAML: {exc.problem or exc}", file=file, line=line) from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"not valid YAML: {exc}", file=file) from exc
    if node is None:
        return None, LineMap()
    lines = LineMap()
    errors: list[PolicyError] = []
    lines.lines[()] = node.start_mark.line + 1
    data = _construct(node, (), lines, errors, file)
    if errors:
        raise PolicyFileError(errors)
    return data, lines


def _construct(node: yaml.Node, path: PathKey, lines: LineMap, errors: list[PolicyError], file: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, file)
            child = (*path, str(key))
            line = key_node.start_mark.line + 1
            if key in out:
                errors.append(PolicyError(f"duplicate key {key!r}", file=file, line=line, field=format_path(child)))
                continue
            lines.lines[child] = line
            out[key] = _construct(value_node, child, lines, errors, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        items: list[Any] = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines.lines[child] = item.start_mark.line + 1
            items.append(_construct(item, child, lines, errors, file))
        return items
    return _scalar(node, file)


def _scalar(node: yaml.Node, file: str) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise PolicyError("mapping keys must be plain scalars", file=file, line=node.start_mark.line + 1)
    try:
        return yaml.SafeLoader("").construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise PolicyError(f"bad value: {exc}", file=file, line=node.start_mark.line + 1) from exc
