"""A plugin as a plain module with @hookimpl functions (loaded via plugins.modules)."""

from __future__ import annotations

from typing import Any

from hooks.spec import hookimpl


@hookimpl
def calculate_custom_kpis(period: str) -> dict[str, Any]:
    return {"module_kpi": period}
