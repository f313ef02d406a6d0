"""The layout the architecture promises, read from the code's own imports (every import, inside functions too).

- ``pipeline/`` is the library, ``pipeline/serve/`` the served app, ``pipeline/batch/`` the bulk job; the library
  imports neither (but for the public re-export of ``ModelCache``), and nothing in ``pipeline/`` imports gradio;
- no import cycle among ``pipeline``'s modules;
- the benchmark (``space/benchmark/bench.py``) stays outside the library's imports;
- no class in ``pipeline/`` is over 250 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "pipeline"
MAX_CLASS_LINES = 250


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path) -> set[str]:
    """Every module name an import statement of the file names, wherever the statement is."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    named: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = base + (node.module.split(".") if node.module else [])
            named |= {".".join(module), *(".".join([*module, alias.name]) for alias in node.names)}
        elif isinstance(node, ast.Import):
            named |= {alias.name for alias in node.names}
    return named


MODULES = _modules()
IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


def _internal(name: str) -> set[str]:
    return {other for other in IMPORTS[name] if other in MODULES and other != name}


def test_the_checker_reads_imports_inside_functions():
    assert "pipeline.catalog" in _internal("pipeline.combined")  # load_pipeline imports it inside the function


def test_no_import_cycle():
    state: dict[str, str] = {}
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(name: str) -> None:
        state[name] = "open"
        path.append(name)
        for other in sorted(_internal(name)):
            if state.get(other) == "open":
                cycles.append([*path[path.index(other) :], other])
            elif other not in state:
                visit(other)
        path.pop()
        state[name] = "done"

    for name in sorted(MODULES):
        if name not in state:
            visit(name)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_the_library_imports_neither_the_served_app_nor_gradio():
    for name in MODULES:
        if name.startswith(("pipeline.serve", "pipeline.batch")):
            continue
        outside = {other for other in _internal(name) if other.startswith(("pipeline.serve", "pipeline.batch"))}
        if name == "pipeline":  # the public names: ModelCache is re-exported for the library's users
            outside -= {"pipeline.serve.cache"}
        assert not outside, f"{name} imports {sorted(outside)}"
    for name in MODULES:
        assert not any(other.split(".")[0] == "gradio" for other in IMPORTS[name]), f"{name} imports gradio"


def test_the_benchmark_is_outside_the_library():
    assert not any(name.endswith("bench") for name in MODULES)
    bench = ROOT / "space" / "benchmark" / "bench.py"
    assert "pipeline.machine" in _imports("bench", bench)  # the machine facts it shares with the batch job


def test_no_class_is_over_250_lines():
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                lines = node.end_lineno - node.lineno + 1
                assert lines <= MAX_CLASS_LINES, f"{name}.{node.name} is {lines} lines"
