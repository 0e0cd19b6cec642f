"""The import rules of DESIGN.md §1, read from the code with ``ast``: a forbidden edge fails here.

providers (no Django, no convadmin) · accounts ← audit ← lists ← exchanges ← credentials ← conversations:
each package imports only what lies below it. Imports under ``if TYPE_CHECKING:`` are not edges.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: package → the first-party modules (prefixes) it may import, besides itself and providers (below all).
ALLOWED = {
    "convadmin.accounts": ("convadmin.audit",),
    "convadmin.lists": (),
    "convadmin.audit": ("convadmin.accounts.roles", "convadmin.lists"),
    "convadmin.exchanges": (),
    "convadmin.credentials": (
        "convadmin.accounts",
        "convadmin.audit",
        "convadmin.lists",
        "convadmin.exchanges",
    ),
    # Export jobs: any list registers with convadmin.lists.export, so this app needs no list's app.
    "convadmin.exports": ("convadmin.accounts.roles", "convadmin.audit", "convadmin.lists", "convadmin.jobs"),
}


def imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every runtime import in ``path``."""
    tree = ast.parse(path.read_text())
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def sources(package: str) -> list[Path]:
    folder = ROOT.joinpath(*package.split("."))
    return [p for p in sorted(folder.rglob("*.py")) if "migrations" not in p.parts]


def forbidden(package: str, allowed: tuple[str, ...]) -> list[str]:
    first_party = ("convadmin",)
    problems = []
    for path in sources(package):
        for line, module in imports(path):
            if not module.startswith(first_party) or module.startswith((package, "convadmin.settings")):
                continue
            if not any(module == a or module.startswith(a + ".") for a in allowed):
                problems.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return problems


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_app_imports_only_what_lies_below_it(package):
    assert forbidden(package, ALLOWED[package]) == []


def test_providers_import_neither_django_nor_convadmin():
    problems = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sources("providers")
        for line, module in imports(path)
        if module.split(".")[0] in ("django", "convadmin")
    ]
    assert problems == []


def test_the_check_sees_a_forbidden_edge(tmp_path, monkeypatch):
    monkeypatch.setattr(
        "tests.test_dependencies.sources",
        lambda package: [tmp_path / "bad.py"],
    )
    monkeypatch.setattr("tests.test_dependencies.ROOT", tmp_path)
    (tmp_path / "bad.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from convadmin.conversations.models import Conversation\n"
        "from convadmin.conversations import services\n"
    )
    assert forbidden("convadmin.audit", ALLOWED["convadmin.audit"]) == [
        "bad.py:4 imports convadmin.conversations.services"
    ]
