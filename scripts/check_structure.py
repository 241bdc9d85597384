#!/usr/bin/env python
"""Check the package's shape (tests run it; anyone can): exit 1 with the findings, else 0.

- no module of ``pathopipe/`` over 450 lines;
- no import cycle between pathopipe modules (imports at module level and inside functions;
  those under ``if TYPE_CHECKING:`` do not run, so they do not count);
- every exception class is defined in ``pathopipe/errors.py``;
- the shard index (its CRC32C) is parsed in ``pathopipe/store/sharding.py`` alone;
- the run folder's file names are spelled in ``pathopipe/output/layout.py`` alone.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pathopipe"
MAX_LINES = 450
RUN_FILES = ("manifest.csv", "run.json", "metrics.parquet", ".pathopipe.lock", "bench.json", "cohort.zarr",
             "report.html", "report.md", "summary.json", "dask-performance.html", "report.pdf",
             "cost_curve.csv", "hardware_curve.csv", "failures.csv", "tiles_per_slide.csv",
             "workers.csv")  # fmt: skip
EXCEPTION_BASES = {"Exception", "BaseException", "ValueError", "OSError", "RuntimeError", "KeyError",
                   "TypeError", "ImportError", "LookupError", "IOError"}  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, here: str, known: set[str]) -> set[str]:
    """The pathopipe modules a module imports (not under ``if TYPE_CHECKING:``)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative import
                base = ".".join([*here.split(".")[: -node.level], node.module])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m in known and m != here}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def findings() -> list[str]:
    found = []
    mods = modules()
    trees = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in mods.items()}
    for path in mods.values():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            found.append(f"{path.relative_to(ROOT)}: {lines} lines (at most {MAX_LINES})")
    graph = {name: _imports(tree, name, set(mods)) for name, tree in trees.items()}
    for cycle in _cycles(graph):
        found.append(f"import cycle between {', '.join(cycle)}")
    for name, tree in trees.items():
        where = mods[name].relative_to(ROOT)
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and name != "pathopipe.errors":
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if bases & EXCEPTION_BASES or any(b.endswith("Error") for b in bases):
                    found.append(f"{where}:{node.lineno}: exception class {node.name} outside errors.py")
            if isinstance(node, ast.Import | ast.ImportFrom) and name != "pathopipe.store.sharding":
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any("crc32c" in n for n in names):
                    found.append(f"{where}:{node.lineno}: CRC32C (the shard index) outside store/sharding.py")
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and name != "pathopipe.output.layout"
            ):
                for run_file in RUN_FILES:
                    if run_file in node.value:
                        found.append(f"{where}:{node.lineno}: {run_file!r} spelled outside output/layout.py")
    return found


if __name__ == "__main__":
    problems = findings()
    for problem in problems:
        print(problem)
    print(f"{len(modules())} modules checked: {len(problems)} finding(s)")
    sys.exit(1 if problems else 0)
