"""Reading the inventory's file: bounded (size, nesting, items, values once aliases are expanded), as YAML that
remembers the line of every key and item, refusing duplicate keys. Every problem is an :class:`InventoryError`
with its line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import yaml

from acceptance.inventory.messages import InventoryError, show

MAX_BYTES = 1 << 20  # bounds of the input (see acceptance.inventory's docstring)
MAX_DEPTH = 32
MAX_ITEMS = 10_000
MAX_VALUES = 50_000


class _Map(dict[Any, Any]):
    line: int = 0
    key_lines: dict[Any, int]


class _List(list[Any]):
    line: int = 0
    item_lines: list[int]


def line_of(container: Any, key: Any = None) -> int | None:
    """The line of `key` (a mapping's key, a list's index) in `container`, else of `container` itself."""
    key_lines = getattr(container, "key_lines", {})
    if isinstance(container, dict) and key is not None and key in key_lines:
        return cast(int, key_lines[key])
    item_lines = getattr(container, "item_lines", [])
    if isinstance(container, list) and isinstance(key, int) and key < len(item_lines):
        return cast(int, item_lines[key])
    return getattr(container, "line", None) or None


class _Refused(yaml.MarkedYAMLError):
    """Input the loader will not read (a bound exceeded, a list as a key...), with its own fix."""

    def __init__(self, problem: str, fix: str, mark: Any) -> None:  # a yaml.Mark, from libyaml or Python
        super().__init__(problem=problem, problem_mark=mark)
        self.fix = fix


_Parser: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when present


def _check_bounds(text: str) -> None:
    """Refuse, from the parser's events and before anything is built, what would take long to load."""
    total = aliases = 0  # values so far, every alias counted as the values of its anchor
    sizes: dict[str, int] = {}  # anchor -> number of values of its node
    stack: list[list[Any]] = []  # open collections: [anchor, total before it, items, is a mapping]
    for event in yaml.parse(text, Loader=_Parser):
        if isinstance(event, yaml.NodeEvent) and stack:
            stack[-1][2] += 1
            if stack[-1][2] > MAX_ITEMS * (2 if stack[-1][3] else 1):
                raise _Refused(f"more than {MAX_ITEMS} items in one list or mapping",
                               "an inventory is small: is this the right file?", event.start_mark)
        if isinstance(event, yaml.AliasEvent):
            if any(entry[0] == event.anchor for entry in stack):
                raise _Refused("an alias inside its own anchor (a recursive structure)", "remove the alias",
                               event.start_mark)
            total += sizes.get(event.anchor or "", 1)  # an undefined alias: the loader says so
            aliases += 1
        elif isinstance(event, yaml.ScalarEvent):
            total += 1
            if event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            stack.append([event.anchor, total, 0, isinstance(event, yaml.MappingStartEvent)])
            total += 1
            if len(stack) > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels", "check the brackets and the indentation",
                               event.start_mark)
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, before, _, _ = stack.pop()
            if anchor:
                sizes[anchor] = total - before
        if total > MAX_VALUES:
            if aliases:
                raise _Refused(f"more than {MAX_VALUES} values, every alias expanded (an alias bomb?)",
                               "an inventory is small: write it without aliases of aliases", event.start_mark)
            raise _Refused(f"more than {MAX_VALUES} values", "an inventory is small: is this the right file?",
                           event.start_mark)


class _Loader(_Parser):  # type: ignore[valid-type,misc]
    """SafeLoader that remembers line numbers and refuses duplicate keys; run after :func:`_check_bounds`."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.merged: dict[int, int] = {}  # id(mapping node) -> number of its pairs that come from merge keys

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        own = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
        super().flatten_mapping(node)
        if len(node.value) > own:  # flatten_mapping puts the merged pairs first
            self.merged[id(node)] = len(node.value) - own

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as e:  # a tagged value its constructor cannot read: !!int with 5000 digits, empty !!int
            value = show(node.value) if isinstance(node, yaml.ScalarNode) else "this value"
            raise _Refused(f"cannot read {value} as {node.tag.rsplit(':', 1)[-1]} ({type(e).__name__})",
                           "quote it, or fix its tag", node.start_mark) from None


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    mapping = _Map()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    loader.flatten_mapping(node)
    merged = loader.merged.get(id(node), 0)
    own: dict[Any, int] = {}  # a key written here may override a merged one (<<), not another one written here
    for i, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise _Refused(f"a {'mapping' if isinstance(key, dict) else 'list'} as a key",
                           "write keys as words ('name: value'; '?' starts a complex key)",
                           key_node.start_mark) from None
        if i >= merged:
            if key in own:
                raise _Refused(f"duplicate key {show(key)} (first at line {own[key]})",
                               "remove one of the two", key_node.start_mark)
            own[key] = line
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = line
    return mapping


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> _List:
    seq = _List(loader.construct_object(child, deep=True) for child in node.value)
    seq.line = node.start_mark.line + 1
    seq.item_lines = [child.start_mark.line + 1 for child in node.value]
    return seq


def _construct_timestamp(loader: _Loader, node: yaml.ScalarNode) -> Any:
    try:
        return loader.construct_yaml_timestamp(node)
    except (ValueError, OverflowError):  # 2026-02-30: a string, refused (with its key) where a date is expected
        return loader.construct_scalar(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def read_text(path: Path) -> str:
    """The file's text: at most :data:`MAX_BYTES`, UTF-8 (with or without a BOM)."""
    if not path.is_file():
        raise InventoryError(path, "--inventory", "file not found" if not path.exists() else "not a file",
                             "pass the path of an inventory YAML file (see README.md)")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise InventoryError(path, "--inventory", f"cannot read: {e.strerror or type(e).__name__}",
                             "check the file's permissions") from None
    if len(data) > MAX_BYTES:
        raise InventoryError(path, "", f"larger than {MAX_BYTES >> 10} KiB",
                             "an inventory is a few KiB: is this the right file?")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InventoryError(path, "", f"not UTF-8 (byte {e.start})", "save the file as UTF-8",
                             data.count(b"\n", 0, e.start) + 1) from None


def read_yaml(text: str, path: Path) -> Any:
    """The YAML of `text` (the file `path`), its mappings and lists marked with their lines (:func:`line_of`)."""
    try:
        _check_bounds(text)
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except _Refused as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise InventoryError(path, "", str(e.problem), e.fix, line) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        parts = [e.context, e.problem]
        if e.context and e.context_mark and mark and e.context_mark.line != mark.line:
            parts[0] = f"{e.context} (line {e.context_mark.line + 1})"  # "found duplicate anchor; first occurrence"
        problem = " ".join(str(p) for p in parts if p)
        raise InventoryError(path, "", f"YAML error: {problem}", "check indentation, colons and quoting on that line",
                             mark.line + 1 if mark else None) from None
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        char = f"#x{e.character:04x}" if isinstance(e.character, int) else repr(e.character)
        raise InventoryError(path, "", f"YAML error: character {char} is not allowed",
                             "remove it (control characters have no place in YAML)", line) from None
    except (yaml.YAMLError, RecursionError) as e:
        raise InventoryError(path, "", f"YAML error: {type(e).__name__}", "check the file's syntax") from None
