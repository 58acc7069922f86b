"""The export package in layers (issue 20): the container under the two record kinds under
the public functions, with no import cycle, and a sandbox child that loads no model code."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPORT = ROOT / "hh_plugin" / "export"

#: Layer of each module of the reading and writing path (a module imports lower layers
#: only): the errors; the container and unit conversion; the kinds' own helpers (values and schema of 1.0, the results of
#: a network run), the two record kinds (which never import each other), the public layer.
LAYERS = {"errors": 0, "units": 1, "container": 1, "format": 2, "schema": 2,
          "network_run": 2, "population_file": 3, "network_file": 3, "io": 4}


def _module_name(path: Path) -> str:
    parts = path.relative_to(EXPORT).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__") or "__init__"


def _imports(path: Path):
    """Every ``hh_plugin.export`` module that ``path`` imports, at module level or inside a
    function, as a dotted name relative to the package."""
    tree = ast.parse(path.read_text())
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
            if node.level - 1 > len(package):
                continue  # beyond hh_plugin.export (hh_plugin.model, ...)
            target = base + (node.module.split(".") if node.module else [])
            if not node.module:
                for alias in node.names:
                    yield ".".join(target + [alias.name])
            else:
                yield ".".join(target)


def _graph():
    graph = {}
    for path in EXPORT.rglob("*.py"):
        graph[_module_name(path)] = {name for name in _imports(path) if name}
    return graph


def _layer(module: str):
    return LAYERS.get(module.split(".")[0])


def test_container_imports_no_record_kind_and_kinds_import_no_public_layer():
    for module, imported in _graph().items():
        if _layer(module) is None:
            continue
        for name in imported:
            if _layer(name) is None:
                continue
            assert _layer(name) < _layer(module) or name.split(".")[0] == \
                module.split(".")[0], f"{module} imports {name}, a layer above or beside it"


def test_no_import_cycle_in_the_export_package():
    graph = _graph()
    known = set(graph)

    def resolve(name):
        return name if name in known else ".".join(name.split(".")[:-1])  # from . import x

    state = {}

    def visit(module, trail):
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", " -> ".join(trail + [module])
        state[module] = "open"
        for name in sorted(graph.get(module, ())):
            target = resolve(name)
            if target in known and target != "__init__":
                visit(target, trail + [module])
        state[module] = "done"

    for module in sorted(graph):
        visit(module, [])


def test_layers_table_names_real_modules():
    top = {p.stem if p.is_file() else p.name for p in EXPORT.iterdir()
           if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())}
    assert set(LAYERS) <= top


@pytest.mark.parametrize("module", ["hh_plugin.export.container.sandbox",
                                    "hh_plugin.export.container.trust"])
def test_the_sandboxed_reader_imports_no_model_code(module):
    # the child process of every default load imports this; sympy and the model package
    # took most of its start (about 1 s) before the layers were split
    code = (f"import sys, {module}; "
            "print(sorted(m for m in ('sympy', 'hh_plugin.model', 'torch', 'brian2') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"
