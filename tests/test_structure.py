"""The shape of src/cnnlab: no import cycles, no function over 100 lines, no file over 500.

The import graph is read from the source with ``ast``, every import statement included (those inside functions,
which hide a cycle from Python, too), independently of import-linter's own graph (its contract in pyproject.toml
says which way the rooms point; this file counts). Known breaches that a branch in flight removes are listed with
the helper that removes them: their tests are xfail(strict=False) until then, and the other tests fail on any
breach that is not listed. ``python tests/test_structure.py`` prints the numbers.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_FUNCTION_LINES = 100
MAX_FILE_LINES = 500


def module_names() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package) for every module under src/."""
    modules = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if package else parts)] = (path, package)
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of cnnlab it imports, from every import statement in its file.

    ``from X import name`` counts as importing X.name when that is a module and X otherwise, as Python resolves it;
    importing a submodule is not counted as importing its parent packages (every package would be in a cycle)."""
    modules = module_names()
    graph: dict[str, set[str]] = {}
    for name, (path, package) in modules.items():
        here = name if package else name.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    imported.add(target if target in modules else base)
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected parts with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                part = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    part.add(member)
                    if member == node:
                        break
                if len(part) > 1:
                    found.append(part)
    return found


def functions(node, prefix: str = ""):
    """(qualified name, lines from its first decorator to its last line) of every function under ``node``."""
    for child in ast.iter_child_nodes(node):
        inner = prefix
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([child.lineno] + [d.lineno for d in child.decorator_list])
            yield f"{prefix}{child.name}", child.end_lineno - first + 1
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            inner = f"{prefix}{child.name}."
        yield from functions(child, inner)


def function_lengths() -> dict[str, int]:
    """'cnnlab/file.py::name' (a method as Class.name) -> its length in lines."""
    return {
        f"{path.relative_to(SRC).as_posix()}::{name}": n
        for path in sorted(SRC.rglob("*.py"))
        for name, n in functions(ast.parse(path.read_text(), str(path)))
    }


def file_lengths() -> dict[str, int]:
    return {path.relative_to(SRC).as_posix(): len(path.read_text().splitlines()) for path in sorted(SRC.rglob("*.py"))}


# --- the graph reader itself must see what it claims to ----------------------------------------------------------


def test_the_graph_sees_imports_inside_functions_and_relative_ones():
    graph = import_graph()
    assert "cnnlab.export" in graph["cnnlab.inference"]  # `from .export import ...`
    assert "cnnlab.data.loader" in graph["cnnlab.evaluation.metrics"]  # `from ..data.loader import ...`
    assert "cnnlab.models" in graph["cnnlab.summary"]  # `from .models import ...` inside summary()
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []


# --- cycles ------------------------------------------------------------------------------------------------------


def test_no_import_cycle():
    unknown = [c for c in cycles(import_graph())]
    assert unknown == [], f"new import cycles: {[sorted(c) for c in unknown]}"
