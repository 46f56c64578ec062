"""The rooms of payscore import one another in one direction only, read from the source (every
``import``, at module level, inside functions and under ``TYPE_CHECKING`` alike):

- ``settings`` (the configuration) imports nothing of payscore, and every room may import it;
- ``features`` imports only ``settings``: pure feature code;
- nothing outside ``dataflows`` imports the flow;
- ``rules`` imports ``settings``, ``features`` (the catalogue, the contract) and, in its I/O
  modules only (:data:`RULES_IO`), ``storage``; its pure modules import nothing else;
- no module imports itself back through others (no import circles).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOMS = (
    "settings",
    "features",
    "storage",
    "model_state",
    "dataflows",
    "review",
    "test_data",
    "rules",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports() -> dict[str, set[str]]:
    """Each project module -> the project modules it imports (``from a import b`` counts as
    ``a.b`` when that is a module, else ``a``)."""
    files = [p for room in ROOMS if (ROOT / room).is_dir() for p in (ROOT / room).rglob("*.py")]
    modules = {module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                    else node.module
                    for a in node.names
                ]  # fmt: skip
            else:
                continue
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def room(module: str) -> str:
    return module.split(".")[0]


def test_settings_imports_nothing_of_payscore() -> None:
    graph = project_imports()
    bad = {m: sorted(d) for m, d in graph.items() if room(m) == "settings" and d - {"settings"}}
    assert bad == {}


def test_features_import_only_settings() -> None:
    graph = project_imports()
    bad = {
        m: sorted(x for x in d if room(x) not in ("features", "settings"))
        for m, d in graph.items()
        if room(m) == "features"
    }
    assert {m: d for m, d in bad.items() if d} == {}


RULES_IO = {"rules.store", "rules.loader", "rules.backtest", "rules.__main__"}


def test_rules_import_settings_features_and_storage_only_for_io() -> None:
    graph = project_imports()
    assert "rules.syntax" in graph
    bad = {}
    for module, deps in graph.items():
        if room(module) != "rules":
            continue
        allowed = {"rules", "settings", "features"} | ({"storage"} if module in RULES_IO else set())
        wrong = sorted(d for d in deps if room(d) not in allowed)
        if wrong:
            bad[module] = wrong
    assert bad == {}


def test_nothing_outside_the_flow_imports_it() -> None:
    graph = project_imports()
    bad = {
        m: sorted(x for x in d if room(x) == "dataflows")
        for m, d in graph.items()
        if room(m) != "dataflows"
    }
    assert {m: d for m, d in bad.items() if d} == {}


def test_no_import_circles() -> None:
    graph = project_imports()
    circles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                circles.append(" -> ".join([*path[path.index(dep) :], dep]))
            elif dep not in state:
                visit(dep, [*path, dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []
