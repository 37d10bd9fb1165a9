"""The package's layers, read from the source: imports go downward only, never in a loop, and
never to another module's private names; no module is over 600 lines.

Every import statement of every module counts, those inside functions included (they run
too, only later). The layers are those of docs/design.md, "Layers".
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("workbench", "widgets")
MAX_LINES = 600

# Bottom to top; a module may import its own package and the layers below it, nothing else.
LAYERS = [
    {"workbench.core"},  # records and registries
    {"workbench", "workbench.models", "workbench.report"},  # the root (the version, lazy exports); models; HTML
    {"workbench.fisher", "workbench.store"},
    {"workbench.runner", "workbench.npeff"},
    {"workbench.analysis", "workbench.distributed"},
    {"workbench.app"},
    {"workbench.bench", "workbench.evaluate", "workbench.__main__"},
    {"widgets"},
]


@lru_cache(maxsize=None)
def modules(root: Path = ROOT) -> dict[str, Path]:
    """{dotted name: file} of every module of the packages under ``root``."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_package(name: str, root: Path = ROOT) -> bool:
    return modules(root)[name].name == "__init__.py"


def _absolute(module: str, node: ast.ImportFrom, root: Path) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if _is_package(module, root) else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


@lru_cache(maxsize=None)
def lazy_exports(package: str) -> frozenset[str]:
    """The names a package exports through workbench.core.lazy (its __init__'s table)."""
    tree = ast.parse(modules()[package].read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_exports":
            for sub in ast.walk(node.args[2]):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and not sub.value.startswith("."):
                    names.add(sub.value)
    return frozenset(names)


@lru_cache(maxsize=None)
def imports(root: Path = ROOT) -> list[tuple[str, str, str, int]]:
    """(importer, imported module, name or "", line) for every import of a module of the packages."""
    found = []
    for module, path in modules(root).items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(module, alias.name, "", node.lineno) for alias in node.names if alias.name.split(".")[0] in PACKAGES]
            elif isinstance(node, ast.ImportFrom):
                target = _absolute(module, node, root)
                if target.split(".")[0] not in PACKAGES:
                    continue
                for alias in node.names:
                    submodule = f"{target}.{alias.name}"
                    found.append((module, submodule, "", node.lineno) if submodule in modules(root)
                                 else (module, target, alias.name, node.lineno))
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """{module: the modules importing it runs}. Importing a.b.c runs a and a.b first, except
    the importer's own packages, which are being imported already."""
    graph = {m: set() for m in modules(root)}
    for importer, imported, _, _ in imports(root):
        parts, own = imported.split("."), importer.split(".")
        ancestors = {".".join(own[:k]) for k in range(1, len(own) + 1)}
        graph[importer] |= {".".join(parts[:k]) for k in range(1, len(parts) + 1)} - ancestors
    return graph


def _layer(module: str) -> tuple[int, str]:
    for depth in (2, 1):
        package = ".".join(module.split(".")[:depth])
        for level, members in enumerate(LAYERS):
            if package in members:
                return level, package
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py: add its package to LAYERS")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph (its modules, the first repeated at the end), or None."""
    state, path = {}, []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_go_down_the_layers_only():
    wrong = []
    for importer, imported, _, line in imports():
        (low, own), (high, other) = _layer(imported), _layer(importer)
        if own != other and low >= high:
            wrong.append(f"{importer}:{line} imports {imported} (layer {low}, not below {high})")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_another_modules_private_names():
    wrong = [f"{importer}:{line} imports {name} from {imported}" for importer, imported, name, line in imports()
             if name.startswith("_") and not name.startswith("__") and imported != importer]
    wrong += [f"{importer}:{line} imports the module {imported}" for importer, imported, _, line in imports()
              if imported.rsplit(".", 1)[-1].startswith("_") and not imported.endswith("__main__")
              and imported.rsplit(".", 1)[0] != importer.rsplit(".", 1)[0] and imported.rsplit(".", 1)[0] != importer]
    assert not wrong, "\n".join(wrong)


def test_no_module_reaches_into_another_modules_private_names():
    """Nor through a module it imported: ``store._write_chunk`` is as private as ``from store import _write_chunk``."""
    wrong = []
    for module, path in modules().items():
        tree = ast.parse(path.read_text())
        bound = {}  # local name -> the module of the packages it names
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                bound.update({(a.asname or a.name.split(".")[0]): (a.name if a.asname else a.name.split(".")[0])
                              for a in node.names if a.name.split(".")[0] in PACKAGES})
            elif isinstance(node, ast.ImportFrom):
                target = _absolute(module, node, ROOT)
                bound.update({(a.asname or a.name): f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules()})
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                    and node.attr.startswith("_") and not node.attr.startswith("__") and bound[node.value.id] != module):
                wrong.append(f"{module}:{node.lineno} uses {bound[node.value.id]}.{node.attr}")
    assert not wrong, "\n".join(wrong)


def test_the_library_imports_lazily_exported_names_from_their_modules():
    """A package's lazy exports are for users; inside the packages a name comes from the module
    that defines it, so the graph read here is the graph that runs."""
    wrong = [f"{importer}:{line} imports {name} from the lazy package {imported}"
             for importer, imported, name, line in imports()
             if name and imported in modules() and _is_package(imported) and name in lazy_exports(imported)]
    assert not wrong, "\n".join(wrong)


def test_no_module_is_over_600_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_check_sees_a_new_cycle(tmp_path):
    """A loop through an import inside a function is found."""
    (tmp_path / "workbench" / "a").mkdir(parents=True)
    (tmp_path / "workbench" / "__init__.py").write_text("")
    (tmp_path / "workbench" / "a" / "__init__.py").write_text("")
    (tmp_path / "workbench" / "a" / "one.py").write_text("from .two import f\n")
    (tmp_path / "workbench" / "a" / "two.py").write_text("def f():\n    from . import one\n")
    assert find_cycle(import_graph(tmp_path)) == ["workbench.a.one", "workbench.a.two", "workbench.a.one"]
