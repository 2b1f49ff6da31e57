"""Where checks come from and how they become items: one item per check, node and ``each`` value.

Check directories are found through configuration, never by importing them: the packages registered under
the ``alice_acceptance.checks`` entry point group (the built-in catalogue, ``checks``), the ``acceptance_checks``
ini option, ``--checks-dir`` and the inventory's ``checks`` key (the operators' site checks). Their modules need
not be named ``test_*.py``; in such a module only ``@check`` functions are collected (its other ``test_*``
functions are helpers, as pytest itself would not collect them there).
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.util
import inspect
from collections.abc import Iterable
from pathlib import Path

import pytest

from acceptance.checkspec import CheckItem, spec_of
from acceptance.run import ITEM_KEY, Scope

ENTRY_POINT_GROUP = "alice_acceptance.checks"
NO_INVENTORY_KEY = pytest.StashKey[str]()
DIRS_KEY = pytest.StashKey[list[Path]]()


def builtin_dirs() -> list[Path]:
    """The folders of the check packages registered as entry points (without importing them)."""
    dirs: list[Path] = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        spec = importlib.util.find_spec(ep.value)
        if spec is not None and spec.submodule_search_locations:
            dirs.extend(Path(p).resolve() for p in spec.submodule_search_locations)
    return dirs


def _argument_dirs(config: pytest.Config) -> list[Path]:
    """Directories named on the command line (a file's folder): checks there are collected too. Only what the
    operator named: never the directory pytest defaults to (running from /tmp must not import /tmp/*.py)."""
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return []
    out = []
    for arg in config.args:
        path = config.invocation_params.dir / arg.split("::")[0]
        if path.is_dir():
            out.append(path)
        elif path.is_file():
            out.append(path.parent)
    return out


def check_dirs(config: pytest.Config, scope: Scope | None) -> list[Path]:
    """Every check directory of this run, built-in first, without duplicates."""
    found = builtin_dirs() + _argument_dirs(config)
    found += [config.rootpath / p for p in config.getini("acceptance_checks")]
    found += [config.invocation_params.dir / p for p in config.getoption("checks_dir") or []]
    if scope is not None:
        found += list(getattr(scope.inventory, "check_dirs", ()))
    return list(dict.fromkeys(p.resolve() for p in found))


def cached_dirs(config: pytest.Config, scope: Scope | None) -> list[Path]:
    """:func:`check_dirs`, computed once per run (it is asked for every file pytest looks at)."""
    if DIRS_KEY not in config.stash:
        config.stash[DIRS_KEY] = check_dirs(config, scope)
    return config.stash[DIRS_KEY]


def site_dirs(config: pytest.Config, scope: Scope) -> list[Path]:
    builtin = set(builtin_dirs())
    return [d for d in check_dirs(config, scope) if d not in builtin]


def collection_args(config: pytest.Config, scope: Scope) -> list[str] | None:
    """The arguments to collect: every check directory when none were given on the command line, else the given
    ones plus the site check directories they do not cover; None to keep pytest's."""
    given = config.args_source == pytest.Config.ArgsSource.ARGS
    dirs = check_dirs(config, scope) if not given else site_dirs(config, scope)
    if given:
        covered = [Path(a.split("::")[0]).resolve() for a in config.args]
        dirs = [d for d in dirs if not any(d == c or c in d.parents for c in covered)]
        return [*config.args, *map(str, dirs)] if dirs else None
    return [str(d) for d in dirs]


def _inside(path: Path, dirs: Iterable[Path]) -> bool:
    parent = path.resolve().parent
    return any(parent == d or d in parent.parents for d in dirs)


def collect_file(file_path: Path, parent: pytest.Collector, dirs: list[Path]) -> pytest.Collector | None:
    """A check module (``<check dir>/**/*.py``) that pytest's python plugin would not collect itself."""
    if file_path.suffix != ".py" or file_path.name.startswith("_") or file_path.name == "conftest.py":
        return None
    if not _inside(file_path, dirs):
        return None
    if parent.session.isinitpath(file_path) or any(
        fnmatch.fnmatch(file_path.name, pattern) for pattern in parent.config.getini("python_files")
    ):
        return None  # pytest's python plugin collects it already
    module: pytest.Collector = CheckModule.from_parent(parent, path=file_path)
    return module


class CheckModule(pytest.Module):
    """A check module that pytest's own naming rules would not collect: only its ``@check`` functions count."""


def make_items(collector: pytest.Collector, name: str, obj: object, scope: Scope | None) -> list[pytest.Item] | None:
    """The items of one ``@check`` function: one per targeted node it applies to (and ``each`` value)."""
    spec = spec_of(obj)
    if spec is None or not inspect.isfunction(obj):
        return [] if isinstance(collector, CheckModule) else None
    if scope is None:
        collector.config.stash[NO_INVENTORY_KEY] = str(collector.path)
        return []
    items: list[pytest.Item] = []
    gated = scope.gate.node.name if scope.gate is not None else None
    for node in scope.targets:
        if not spec.applies_to(node) or spec.gate != (node.name == gated):
            continue  # gate checks only on the gated node, and nothing else there
        for param in spec.params(scope.inventory, node):
            info = CheckItem(spec=spec, check_id=spec.check_id(node, param), node=node, param=param)
            item = pytest.Function.from_parent(collector, name=info.test_id, callobj=obj)
            item.stash[ITEM_KEY] = info
            item.user_properties.extend(info.properties())
            item.add_marker(node.role)
            item.add_marker(spec.severity)
            items.append(item)
    return items


def missing_inventory(config: pytest.Config) -> str | None:
    where = config.stash.get(NO_INVENTORY_KEY, None)
    if where is None:
        return None
    return (f"{where}: these checks need an inventory; fix: pass --inventory FILE "
            "(or run the suite's own tests: pytest tests/unit)")


def unknown_remediation(items: list[pytest.Item]) -> str | None:
    """A check naming a remediation fixture that does not exist fails the collection, not a night's run."""
    for item in items:
        info = item.stash.get(ITEM_KEY, None)
        name = info.spec.remediation if info is not None else None
        known = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        if name and name not in known:
            return (f"{item.nodeid}: remediation {name!r} is not a fixture; fix: name one of the remediation "
                    "fixtures (remediation/fixtures.py) or define it in your conftest.py")
    return None
