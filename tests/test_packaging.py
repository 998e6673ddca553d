"""The wheel is the product: declared runtime dependencies match the imports, package data is found."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import provgraph
from provgraph.bench.__main__ import SCENARIOS
from provgraph.bench.graph_http import K6_SCRIPTS
from provgraph.policy.bundle import example_bundle_dir, example_bundle_files

REPO = Path(__file__).resolve().parents[1]
PACKAGE = Path(provgraph.__file__).resolve().parent


def _dist(requirement: str) -> str:
    """The normalized distribution name of a requirement string (PEP 503)."""
    name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules() -> dict[str, set[str]]:
    """Top-level modules the package imports anywhere (lazy imports in functions too) -> files."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.relative_to(PACKAGE).as_posix())
    return found


def test_runtime_dependencies_are_exactly_the_third_party_imports() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {_dist(r) for r in project["dependencies"]}
    by_module = importlib.metadata.packages_distributions()
    imported: dict[str, set[str]] = {}
    for module, files in _imported_modules().items():
        if module in sys.stdlib_module_names or module in ("__future__", "provgraph"):
            continue
        assert module in by_module, f"{module} (imported by {sorted(files)}) is not installed"
        for dist in by_module[module]:
            imported.setdefault(_dist(dist), set()).update(files)
    missing = {d: sorted(f) for d, f in imported.items() if d not in declared}
    assert not missing, f"imported at run time but not in [project].dependencies: {missing}"
    unused = declared - set(imported)
    assert not unused, f"declared in [project].dependencies but never imported: {sorted(unused)}"
    # The k6 binary is run, not imported: it is an extra, not a runtime dependency.
    assert [_dist(r) for r in project["optional-dependencies"]["k6"]] == ["k6"]


def test_example_bundle_ships_inside_the_package() -> None:
    folder = example_bundle_dir()
    assert Path(str(folder)).resolve().is_relative_to(PACKAGE)
    assert (folder / ".manifest").is_file() and (folder / "README.md").is_file()
    assert sorted(example_bundle_files()) == ["provgraph/authz/data.json", "provgraph/authz/policy.rego"]
    # One copy: nothing of it is left at the repository's top level.
    assert not (REPO / "examples").exists()


def test_k6_scripts_ship_inside_the_package() -> None:
    assert Path(str(K6_SCRIPTS)).resolve().is_relative_to(PACKAGE)
    graph = (K6_SCRIPTS / "graph.js").read_text()
    assert "from './lib.js'" in graph and (K6_SCRIPTS / "lib.js").is_file()


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "provgraph.bench", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_bench_help_lists_every_scenario_and_each_scenario_has_help() -> None:
    top = _bench("--help")
    assert top.returncode == 0, top.stderr
    assert all(name in top.stdout for name in SCENARIOS)
    for name in SCENARIOS:
        sub = _bench(name, "--help")
        assert sub.returncode == 0, (name, sub.stderr)
        assert f"python -m provgraph.bench {name}" in sub.stdout, (name, sub.stdout)
    unknown = _bench("nope")
    assert unknown.returncode == 2 and "usage: python -m provgraph.bench" in unknown.stderr
