"""The package's shape (scripts/check_structure.py): no module over 450 lines, no import cycle,
every exception in errors.py, the shard index parsed in one module, run-folder names spelled once."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_structure.py"


def _checker():
    spec = importlib.util.spec_from_file_location("check_structure", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_keeps_its_shape():
    assert _checker().findings() == []


def test_the_checker_finds_what_it_looks_for(tmp_path):
    checker = _checker()
    a = {"pathopipe.a": "import pathopipe.b\n", "pathopipe.b": "def f():\n    from pathopipe import a\n"}
    trees = {name: __import__("ast").parse(text) for name, text in a.items()}
    graph = {name: checker._imports(tree, name, set(a)) for name, tree in trees.items()}
    assert checker._cycles(graph) == [["pathopipe.a", "pathopipe.b"]]
    guarded = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pathopipe.a\n"
    assert checker._imports(__import__("ast").parse(guarded), "pathopipe.b", set(a)) == set()
