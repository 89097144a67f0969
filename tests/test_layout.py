"""The app's code stands on its own: nothing under calls/ imports the development tools."""

from __future__ import annotations

import ast
from pathlib import Path

CALLS = Path(__file__).resolve().parents[1] / "calls"


def _imported(tree: ast.AST) -> set[str]:
    """The top-level packages a module's import statements name."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_calls_never_imports_devtools() -> None:
    offenders = [
        str(path.relative_to(CALLS.parent))
        for path in sorted(CALLS.rglob("*.py"))
        if "devtools" in _imported(ast.parse(path.read_text(), str(path)))
    ]
    assert offenders == []


def test_no_module_is_named_utils() -> None:
    assert [path for path in CALLS.rglob("utils.py")] == []
