"""The shape of the test suite itself."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _imported(path: Path) -> set[str]:
    """Every module an import in ``path`` names (``from a import b`` counts ``a`` and ``a.b``), relative
    imports resolved against the file's package, at any depth (imports inside functions too)."""
    package = _module_of(path).rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_no_module_imports_a_test_module_or_a_conftest() -> None:
    """Helpers live in tests/support; fixtures reach tests by pytest's injection, never by an import."""
    files = sorted(TESTS.rglob("*.py"))
    protected = {
        _module_of(f): f for f in files if f.name == "conftest.py" or (f.name.startswith("test_") and f.suffix == ".py")
    }
    offences = [
        f"{f.relative_to(ROOT)} imports {name}"
        for f in files
        for name in sorted(_imported(f))
        if name in protected and protected[name] != f
    ]
    assert not offences, "\n".join(offences)
