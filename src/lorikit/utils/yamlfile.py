"""The one YAML reader for every file lorikit reads: train configs, merge and mergekit configs,
recipes and study files.

Safe (plain data only), and bounded: YAML's anchors and aliases let a file of a few hundred bytes
stand for billions of nodes (each alias of an alias doubles the tree), which a consumer that walks
the data (validation, hashing, JSON) would then expand. The document's node graph is therefore
measured *before* anything is built: at most ``MAX_NODES`` nodes with every alias expanded, no
anchor that contains itself, no nesting deeper than ``MAX_DEPTH``. A key given twice in one mapping
is refused too (YAML would silently keep the last one); mappings remember the line of each key
(``key_lines``) so callers can point at it.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from ..errors import UsageError
from .textfile import read_text

MAX_NODES = 20_000  # after alias expansion; a recipe of 100 stages is about 2 000
MAX_DEPTH = 100


class Lines(dict):
    """A YAML mapping that remembers the (1-based) line of each key."""

    key_lines: dict[str, int]


class DuplicateKey(Exception):
    def __init__(self, key, first: int, again: int):
        super().__init__(f"{again}: duplicate key {key!r} (first given on line {first}; "
                         f"YAML would silently keep only the last one)")


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping and records each key's line."""

    def construct_mapping(self, node, deep=False):
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in lines:
                raise DuplicateKey(key, lines[key], key_node.start_mark.line + 1)
            if isinstance(key, (str, int, float, bool)):
                lines[key] = key_node.start_mark.line + 1
        mapping = Lines(super().construct_mapping(node, deep=deep))
        mapping.key_lines = {str(k): v for k, v in lines.items()}
        return mapping

    def construct_lines_map(self, node):
        data = Lines()
        data.key_lines = {}
        yield data
        value = self.construct_mapping(node)
        data.update(value)
        data.key_lines = value.key_lines


StrictLoader.add_constructor("tag:yaml.org,2002:map", StrictLoader.construct_lines_map)


class TooLarge(Exception):
    pass


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def check_node_budget(root, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> None:
    """Refuse a node graph over budget: without building it, and without recursion."""
    sizes: dict[int, int] = {}
    expanding: set[int] = set()  # the nodes on the current path: a child among them is a cycle
    stack = [(root, 1)]
    while stack:
        node, depth = stack[-1]
        key = id(node)
        if key in sizes:
            stack.pop()
        elif key not in expanding:
            if depth > max_depth:
                raise TooLarge(f"nested more than {max_depth} levels deep")
            expanding.add(key)
            for child in _children(node):
                if id(child) in expanding:
                    raise TooLarge(f"line {child.start_mark.line + 1}: an anchor that contains itself "
                                   "(a recursive alias)")
                if id(child) not in sizes:
                    stack.append((child, depth + 1))
        else:
            size = 1 + sum(sizes[id(c)] for c in _children(node))
            if size > max_nodes:
                raise TooLarge(f"more than {max_nodes} values once its aliases (*name) are expanded "
                               "(an alias bomb?)")
            sizes[key] = size
            expanding.discard(key)
            stack.pop()


def parse_yaml(text: str, source: str) -> Any:
    """Plain data from YAML ``text``; ``source`` names it in errors (one line, UsageError)."""
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_node_budget(node)
        return loader.construct_document(node)
    except DuplicateKey as exc:
        raise UsageError(f"{source}:{exc}") from None
    except TooLarge as exc:
        raise UsageError(f"{source}: refused: {exc}") from None
    except RecursionError:
        raise UsageError(f"{source}: refused: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise UsageError(f"{where}: malformed YAML ({getattr(exc, 'problem', None) or exc})".splitlines()[0]) from None
    finally:
        loader.dispose()


def load_yaml(path: str | os.PathLike, source: str | None = None) -> Any:
    """``parse_yaml`` of a file; ``source`` (default the path) names it in errors."""
    source = source or str(path)
    return parse_yaml(read_text(path, source, expected="a YAML file"), source)
