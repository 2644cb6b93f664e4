"""Docs and tests that cannot drift from the hook specs (Datasette style)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from hooks.base import CustomerHooks
from hooks.manager import FieldgatePluginManager
from hooks.spec import ALL_HOOKS, BUSINESS_HOOKS, EXTRA_PARAMS

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "docs" / "plugins.md").read_text()
TESTS = "\n".join(p.read_text() for p in (ROOT / "tests" / "hooks").glob("test_*.py"))


def _argnames(hook: str) -> list[str]:
    return list(FieldgatePluginManager().hook.__dict__[hook].spec.argnames)


def test_the_twelve_business_hooks() -> None:
    assert len(BUSINESS_HOOKS) == 12
    assert len(ALL_HOOKS) == 16


@pytest.mark.parametrize("hook", ALL_HOOKS)
def test_hook_is_documented(hook: str) -> None:
    signature = f"`{hook}({', '.join(_argnames(hook))})`"
    assert signature in DOCS, f"docs/plugins.md lacks the hook signature {signature}"


@pytest.mark.parametrize("hook", ALL_HOOKS)
def test_hook_has_a_test(hook: str) -> None:
    assert re.search(rf"def test_hook_{hook}\(", TESTS), f"no test_hook_{hook} in tests/hooks"


@pytest.mark.parametrize("hook", ALL_HOOKS)
def test_base_class_matches_spec(hook: str) -> None:
    params = list(inspect.signature(getattr(CustomerHooks, hook)).parameters)[1:]
    assert params + list(EXTRA_PARAMS.get(hook, ())) == _argnames(hook)


@pytest.mark.parametrize("hook", ALL_HOOKS)
def test_spec_docstring_shape(hook: str) -> None:
    doc = inspect.getdoc(getattr(FieldgatePluginManager().hook, hook).spec.function) or ""
    assert "Results:" in doc and "Must not:" in doc
    for name in _argnames(hook):
        assert f":param {name}:" in doc
