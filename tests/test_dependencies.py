"""The import rules between the layers (providers, apps, views), read from the code with ``ast``: a forbidden edge fails here.

providers (no Django, no convadmin) · accounts ← audit ← lists ← exchanges ← credentials ← conversations:
each package imports only what lies below it. Imports under ``if TYPE_CHECKING:`` are not edges.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: package → the first-party modules (prefixes) it may import, besides itself and providers (below all).
ALLOWED = {
    "convadmin.accounts": ("convadmin.audit",),
    "convadmin.lists": (),
    "convadmin.jobs": (),
    "convadmin.audit": ("convadmin.accounts.roles", "convadmin.lists"),
    "convadmin.exchanges": (),
    "convadmin.cli": (),  # command-line input and database checks, below every app
    "convadmin.drafts": ("convadmin.accounts", "convadmin.audit", "convadmin.credentials"),
    "convadmin.credentials": (
        "convadmin.cli",
        "convadmin.accounts",
        "convadmin.audit",
        "convadmin.lists",
        "convadmin.exchanges",
        "convadmin.jobs",
    ),
    # Export jobs: any list registers with convadmin.lists.export, so this app needs no list's app.
    "convadmin.exports": ("convadmin.accounts.roles", "convadmin.audit", "convadmin.lists", "convadmin.jobs"),
    # Reads every domain app; nothing imports it but the URLs.
    "convadmin.dashboard": (
        "convadmin.accounts",
        "convadmin.lists",
        "convadmin.credentials",
        "convadmin.exchanges",
        "convadmin.conversations",
    ),
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


#: A branch on a provider's name: the name as a quoted string (``== "msgraph"``, ``provider="mixin"``).
PROVIDER_NAME = re.compile(r"""["'](mixin|twilio|highlevel|msgraph)["']""")
#: Where a provider may be named: migrations (frozen choices) and the demo data.
NAMED_ON_PURPOSE = ("migrations", "seed_demo.py")


def provider_branches(root: Path) -> list[str]:
    """``path:line: text`` of every line under ``convadmin/`` and ``templates/`` naming a provider."""
    found = []
    for folder in ("convadmin", "templates"):
        for path in sorted((root / folder).rglob("*")):
            if path.suffix not in (".py", ".html") or any(p in path.parts for p in NAMED_ON_PURPOSE):
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if PROVIDER_NAME.search(line):
                    found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return found


def test_no_code_or_template_branches_on_a_provider_name():
    """Whatever differs between providers is a hook of their module (providers.base.HOOK_DEFAULTS)."""
    assert provider_branches(ROOT) == []


def test_the_check_sees_a_branch_on_a_provider_name(tmp_path):
    (tmp_path / "convadmin" / "credentials").mkdir(parents=True)
    (tmp_path / "convadmin" / "credentials" / "forms.py").write_text('if provider == "mixin":\n    pass\n')
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "edit.html").write_text(
        "{% if credential.provider == 'msgraph' %}{% endif %}\n"
    )
    (tmp_path / "convadmin" / "migrations").mkdir()
    (tmp_path / "convadmin" / "migrations" / "0001_initial.py").write_text('("mixin", "Mixin Messenger")\n')
    assert provider_branches(tmp_path) == [
        'convadmin/credentials/forms.py:1: if provider == "mixin":',
        "templates/edit.html:1: {% if credential.provider == 'msgraph' %}{% endif %}",
    ]
