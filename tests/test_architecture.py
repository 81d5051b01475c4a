"""The layout's rules that import-linter cannot express: SQL is written in store/ only, modules stay small,
wire models follow one naming rule, and the test suite's helpers live in tests/support.

import-linter (pyproject.toml) keeps the layers' order; these tests read the source itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "controlplane"
ABOVE_STORE = ("services", "dialects", "api", "console", "main.py", "cli")
# What code above store/ may take from SQLAlchemy: session types to pass on, and exceptions to translate.
SESSION_ONLY = {"sqlalchemy.ext.asyncio", "sqlalchemy.exc"}
MAX_LINES = 400


def _modules(*roots: str) -> list[Path]:
    out: list[Path] = []
    for root in roots:
        path = PACKAGE / root
        out.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    return out


def _sqlalchemy_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sqlalchemy":
            if node.module not in SESSION_ONLY:
                found.append(f"from {node.module} import {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] == "sqlalchemy"]
    return found


def test_sql_is_built_in_store_only() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): found for path in _modules(*ABOVE_STORE) if (found := _sqlalchemy_imports(path))
    }
    assert offenders == {}, "queries belong in controlplane/store/: " + repr(offenders)


def test_the_check_sees_a_query_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from sqlalchemy import select\nfrom sqlalchemy.exc import IntegrityError\nimport sqlalchemy.orm\n"
    )
    assert _sqlalchemy_imports(module) == ["from sqlalchemy import select", "import sqlalchemy.orm"]


@pytest.mark.parametrize("path", _modules("."), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path: Path) -> None:
    if "migrations" in path.parts:
        pytest.skip("a migration is as long as the schema change it records")
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines (at most {MAX_LINES}): split it"


ENVELOPE = {"Wire", "SeedModel", "Page", "Links", "Href", "ErrorBody", "ErrorEntry", "AutomationBase"}
SUFFIXES = ("Create", "Update", "Public")


def _wire_models() -> list[type]:
    import controlplane.main  # noqa: F401  (imports every module, so every model is seen)
    from controlplane.core.schemas.wire import Wire
    from controlplane.dialects.schemas import SeedModel

    found: list[type] = []
    todo: list[type] = [Wire, SeedModel]
    while todo:
        kind = todo.pop()
        found.append(kind)
        todo.extend(kind.__subclasses__())
    return [k for k in found if k.__module__.startswith("controlplane.")]


def test_wire_models_follow_the_naming_rule() -> None:
    """core/schemas/__init__.py: XCreate for bodies that make, XUpdate for bodies that change, XPublic for answers."""
    models = _wire_models()
    assert len(models) > 40
    offenders = sorted(
        f"{k.__module__}.{k.__name__}"
        for k in models
        if (base := k.__name__.split("[")[0]) not in ENVELOPE and not base.endswith(SUFFIXES)
    )
    assert offenders == []


# --- the test suite's own shape -------------------------------------------------------------------

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
