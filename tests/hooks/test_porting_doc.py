"""docs/plugins.md "What porting took" says exactly what changed between the original plugin
and its port (tests/hooks/ported/): compared here method by method, on the syntax tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from hooks.spec import ALL_HOOKS

ROOT = Path(__file__).resolve().parents[2]
PORTED = Path(__file__).parent / "ported"
ORIGINAL = PORTED / "original_acme_hooks.py.txt"
PORT = PORTED / "customers" / "acme" / "hooks" / "__init__.py"
BUSINESS_HOOKS = {h for h in ALL_HOOKS if not h.startswith("register_")}


def section() -> str:
    text = (ROOT / "docs" / "plugins.md").read_text()
    start = text.index("### What porting took")
    return text[start:text.index("The database code, pattern by pattern:", start)]


def methods(path: Path) -> dict[str, str]:
    tree = ast.parse(path.read_text())
    [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    return {f.name: ast.dump(f) for f in cls.body
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)}


def imports(path: Path) -> set[str]:
    return {line for line in path.read_text().splitlines()
            if line.startswith(("from ", "import ")) and not line.startswith("from .")}


def test_the_twelve_hooks_are_unchanged_and_the_four_helpers_are_the_ones_named() -> None:
    before, after = methods(ORIGINAL), methods(PORT)
    assert set(before) == set(after)
    changed = {name for name in before if before[name] != after[name]}
    hooks = BUSINESS_HOOKS & set(before)
    assert len(BUSINESS_HOOKS) == 12 and hooks == BUSINESS_HOOKS, "the plugin has all twelve"
    assert not changed & hooks, "no hook body changed"
    named = set(re.findall(r"^  \| `(_\w+)` \|", section(), re.M))
    assert len(named) == 4 and changed == named, (changed, named)
    assert "**Four storage helpers: rewritten.**" in section()


def test_the_imports_are_the_ones_named() -> None:
    removed = imports(ORIGINAL) - imports(PORT)
    added = imports(PORT) - imports(ORIGINAL)
    text = section()
    assert added == {"from hooks.base import CustomerHooks"}
    assert removed == {"from app.hooks.base import CustomerHooks",
                       "from app.models import Note, WorkOrder",
                       "from sqlalchemy import func, select"}
    assert "`from app.hooks.base import CustomerHooks` became\n  `from hooks.base import " \
           "CustomerHooks`" in text
    for line in removed - {"from app.hooks.base import CustomerHooks"}:
        assert f"`{line}`" in text
