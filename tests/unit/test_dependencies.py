"""Every package the product imports directly is declared in pyproject.toml's [project].dependencies: the
wheel installed on a fresh machine (pip install alice-acceptance) must not lean on something that happens
to come along with another dependency (requests with hvac, urllib3 with requests, jinja2 with pytest-html)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("acceptance", "remediation", "reports", "checks")  # the packages the wheel ships
# Modules that only type checkers know (typeshed's stdlib stubs), imported under `if TYPE_CHECKING:`.
TYPING_ONLY = frozenset({"_typeshed"})


def normalized(name: str) -> str:
    """A distribution's name as PEP 503 compares it: PyYAML, pyyaml and py_yaml are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    """The normalized names of [project].dependencies (a requirement's name ends at its first extra, marker,
    version or space)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = set()
    for requirement in project.get("dependencies", []):
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        assert match, f"pyproject.toml: cannot read the dependency {requirement!r}"
        names.add(normalized(match.group(1)))
    return names


def top_level_imports(source: str) -> Iterator[tuple[str, int]]:
    """(top-level module, line) for each absolute import in `source`; relative imports are the package's own."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.partition(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.partition(".")[0], node.lineno


def third_party_imports() -> dict[str, list[str]]:
    """Every module the product imports that is neither the standard library's nor the product's own, with
    where (path:line) it is imported."""
    found: dict[str, list[str]] = {}
    for package in PRODUCT:
        for path in sorted((REPO / package).rglob("*.py")):
            for module, line in top_level_imports(path.read_text(encoding="utf-8")):
                if module in sys.stdlib_module_names or module in TYPING_ONLY or module in PRODUCT:
                    continue
                found.setdefault(module, []).append(f"{path.relative_to(REPO)}:{line}")
    return found


def test_every_directly_imported_package_is_declared() -> None:
    providers = packages_distributions()  # import name -> the installed distributions that provide it
    wanted = declared()
    undeclared, unknown = [], []
    for module, where in sorted(third_party_imports().items()):
        dists = providers.get(module)
        if not dists:
            unknown.append(f"{module} (no installed distribution provides it; imported at {', '.join(where)})")
        elif not {normalized(d) for d in dists} & wanted:
            undeclared.append(f"{module} from {' or '.join(sorted(set(dists)))} (imported at {', '.join(where)})")
    assert not undeclared and not unknown, "\n  ".join(
        ["imported directly but not in pyproject.toml [project].dependencies:", *undeclared, *unknown])


# ---- the walk itself


def test_the_walk_finds_the_product_s_imports() -> None:
    found = third_party_imports()
    assert {"pytest", "yaml", "tenacity"} <= set(found)  # yaml: the import name of PyYAML
    assert not set(found) & set(PRODUCT)
    assert "json" not in found and "__future__" not in found
    assert all(re.fullmatch(r"[\w/]+\.py:\d+", w) for where in found.values() for w in where)


def test_imports_are_read_to_their_top_level_module_and_relative_ones_left_out() -> None:
    source = "import a.b.c, d as e\nfrom f.g import h\nfrom . import i\nfrom .j import k\nif X:\n    import m\n"
    assert [m for m, _ in top_level_imports(source)] == ["a", "d", "f", "m"]


@pytest.mark.parametrize(("name", "expected"), [("PyYAML", "pyyaml"), ("py_consul", "py-consul"),
                                                 ("prometheus.client", "prometheus-client"), ("A--b__C", "a-b-c")])
def test_names_are_compared_as_pep_503_says(name: str, expected: str) -> None:
    assert normalized(name) == expected


def test_the_declared_names_are_read_without_their_versions() -> None:
    names = declared()
    assert {"pytest", "pyyaml", "py-consul", "prometheus-client"} <= names
    assert not any(set(n) & set("<>=!~[; ") for n in names)
