"""The product's layering, read from its sources (no import is run): no import cycle among its modules, its
packages in one order, each importing only those below it (``reports`` standing alone: it reads the records' JSON,
not the suite's objects), the inventory at the start of the data flow (it imports nothing of the rest), and
nothing of the product taken from the tests.

Every import counts: at the top of a module, inside a function, under ``TYPE_CHECKING``. ``from a.b import c``
is an edge to the module ``a.b.c`` when there is one, else to ``a.b``.
"""

from __future__ import annotations

import ast
import graphlib
import itertools
from pathlib import Path

from .conftest import ROOT

PRODUCT = ("acceptance", "alice_acceptance", "checks", "remediation", "reports")
# the packages bottom to top: each may import those before it, never one after it. The checks name their fixes
# (``@check(remediation=restart_unit)``, the fixture itself, so that a typo fails at import): they sit above
# remediation, which never imports a check. The application (the plugin, the CLI, the moments) is on top.
LAYERS = ("reports", "acceptance", "remediation", "checks", "alice_acceptance")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    """Every module of the product, by its dotted name."""
    return {_module_name(path): path for package in PRODUCT for path in sorted((ROOT / package).rglob("*.py"))}


def _imported(module: str, path: Path) -> set[str]:
    """The dotted names `module` imports: ``a.b`` for ``import a.b``, ``a.b.c`` for ``from a.b import c`` (``c``
    a module or a name in ``a.b``); relative imports made absolute."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, `level - 1` packages up
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _resolve(name: str, modules: set[str]) -> str | None:
    """The product module an imported name stands for: the longest prefix of it that is a module."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """Each product module -> the product modules it imports (itself left out: a package may name itself)."""
    sources = _sources()
    modules = set(sources)
    graph: dict[str, set[str]] = {}
    for module, path in sources.items():
        targets = {_resolve(name, modules) for name in _imported(module, path)}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def test_the_graph_covers_the_product() -> None:
    graph = import_graph()
    assert {_top(m) for m in graph} == set(PRODUCT)
    assert "acceptance.inventory.model" in graph["acceptance.inventory"]
    assert "acceptance.inventory" in graph["acceptance.clients.config"]


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of `graph` in import order (a imports b ... imports a), or [] when there is none."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as e:
        return list(reversed(e.args[1]))
    return []


def test_a_cycle_is_found_and_said_in_import_order() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    cycle = _cycle(graph)
    assert len(cycle) == 4 and cycle[0] == cycle[-1]
    assert all(after in graph[before] for before, after in itertools.pairwise(cycle))


def test_imports_are_read_absolute_wherever_they_stand(tmp_path: Path) -> None:
    source = tmp_path / "y.py"
    source.write_text("import a.b\nfrom .z import w\nfrom .. import v\n"
                      "def f() -> None:\n    from c import d\n"
                      "if TYPE_CHECKING:\n    from e.f import g\n", encoding="utf-8")
    assert _imported("p.q.y", source) == {"a.b", "p.q.z.w", "p.v", "c.d", "e.f.g"}
    assert _resolve("p.q.z.w", {"p", "p.q", "p.q.z"}) == "p.q.z"
    assert _resolve("os.path", {"p"}) is None


def test_no_import_cycle() -> None:
    cycle = _cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_reports_import_nothing_of_the_suite() -> None:
    graph = import_graph()
    found = sorted(f"{m} imports {t}" for m, targets in graph.items() if _top(m) == "reports"
                   for t in targets if _top(t) != "reports")
    assert not found, "; ".join(found)


def test_the_inventory_imports_nothing_of_the_suite() -> None:
    """The data flow starts at the inventory: every other layer may read it, it reads none of them."""
    def inside(name: str) -> bool:
        return name == "acceptance.inventory" or name.startswith("acceptance.inventory.")

    found = sorted(f"{m} imports {t}" for m, targets in import_graph().items() if inside(m)
                   for t in targets if not inside(t))
    assert not found, "; ".join(found)


def test_the_product_imports_nothing_of_the_tests() -> None:
    sources = _sources()
    found = sorted(f"{m} imports {name}" for m, path in sources.items() for name in _imported(m, path)
                   if _top(name) in ("tests", "conftest"))
    assert not found, "; ".join(found)


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Each package -> the other packages its modules import."""
    packages: dict[str, set[str]] = {_top(m): set() for m in graph}
    for module, targets in graph.items():
        packages[_top(module)] |= {_top(t) for t in targets if _top(t) != _top(module)}
    return packages


def _upward(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a package above the importer's (or of one outside LAYERS), as 'a.b imports c.d'."""
    rank = {package: i for i, package in enumerate(LAYERS)}
    return sorted(f"{m} imports {t}" for m, targets in graph.items() for t in targets
                  if _top(t) != _top(m) and rank.get(_top(t), len(LAYERS)) > rank.get(_top(m), -1))


def test_an_upward_import_is_found() -> None:
    graph = {"acceptance.run": {"reports.summary"}, "remediation.engine": {"acceptance.run", "checks.node"},
             "reports.write": {"alice_acceptance.plugin"}}
    assert _upward(graph) == ["remediation.engine imports checks.node", "reports.write imports alice_acceptance.plugin"]
    assert package_graph(graph) == {"acceptance": {"reports"}, "remediation": {"acceptance", "checks"},
                                    "reports": {"alice_acceptance"}}


def test_the_layers_are_the_product() -> None:
    assert sorted(LAYERS) == sorted(PRODUCT)


def test_packages_import_only_the_packages_below_them() -> None:
    """reports -> acceptance -> remediation -> checks -> alice_acceptance, bottom to top: not even under
    TYPE_CHECKING or inside a function does a package import one above it."""
    found = _upward(import_graph())
    assert not found, "; ".join(found)


def test_no_package_cycle() -> None:
    cycle = _cycle(package_graph(import_graph()))
    assert not cycle, "package import cycle: " + " -> ".join(cycle)


def test_the_package_edges_are_the_allowed_ones() -> None:
    """The edges there are (each allowed by LAYERS): a new one is a decision, made here."""
    assert package_graph(import_graph()) == {
        "reports": set(),
        "acceptance": {"reports"},
        "remediation": {"acceptance", "reports"},
        "checks": {"acceptance", "remediation"},
        "alice_acceptance": {"acceptance", "remediation", "reports"},
    }
