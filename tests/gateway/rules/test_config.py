"""The rules section: the README's sample validates, mistakes are clear config errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from gateway.rules.config import RulesSection

ROOT = Path(__file__).resolve().parents[3]


def test_sample_config_validates_and_is_in_the_readme() -> None:
    sample = (ROOT / "gateway/rules/sample.yaml").read_text()
    section = RulesSection.model_validate(yaml.safe_load(sample)["rules"])
    assert len(section.alarms) == 6 and len(section.quotas) == 2
    assert section.alarms[0].kind == "threshold"  # the default kind
    assert sample in (ROOT / "gateway/rules/README.md").read_text()  # included verbatim


def test_empty_section_is_valid() -> None:
    assert RulesSection().enabled


@pytest.mark.parametrize(("rules", "needle"), [
    ({"alarms": [{"name": "a", "point": "p", "condition": {"op": ">"}}]}, "needs a value"),
    ({"alarms": [{"name": "a", "point": "p", "condition": {"op": "outside"}}]}, "range"),
    ({"alarms": [{"name": "a", "point": "p", "condition": {"op": "inside",
                                                         "range": [5, 1]}}]}, "low <= high"),
    ({"alarms": [{"name": "a", "point": "p", "condition": {"op": ">", "value": 1},
                  "message": "{device} {nope}"}]}, "unknown field"),
    ({"alarms": [{"name": "a", "point": "p", "condition": {"op": ">", "value": 1},
                  "deadband": 1, "clear": {"op": "<", "value": 0}}]}, "either clear"),
    ({"alarms": [{"name": "a", "kind": "stale", "point": "p", "after": 5},
                 {"name": "a", "kind": "offline"}]}, "used twice"),
    ({"alarms": [{"name": "a", "kind": "fault", "mode": "bitmask", "point": "p",
                  "codes": {64: "x"}}]}, "0..63"),
    ({"alarms": [{"name": "a", "kind": "nope"}]}, "kind"),
    ({"quotas": [{"name": "q", "period": "day", "budget_kwh": 1, "energy_point": None}]},
     "energy_point or power_point"),
    ({"quotas": [{"name": "q", "period": "year", "budget_kwh": 1}]}, "period"),
    ({"quotas": [{"name": "q", "period": "day", "budget_kwh": 1, "thresholds": []}]},
     "thresholds"),
])
def test_bad_rules_are_rejected(rules: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValidationError) as err:
        RulesSection.model_validate(rules)
    assert needle in str(err.value)
