"""The README's benchmark table and bench/results/*.json cannot drift apart.

Every row of the table names its result files (``name.json``). Every number in the row's
figure and machine cells must equal a figure of those files (their summary, params,
conditions or machine) rounded as the README shows it: "520,000" is 519,890 to three
significant digits, "6.1" is 6.086 to one decimal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?(?![\w])")
JSON_NAME = re.compile(r"`?([\w.]+)\.json`?")


def section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Benchmarks")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def rows() -> list[list[str]]:
    out = []
    for line in section().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 5 and not set(cells[0]) <= {"-", " "}:
            out.append(cells)
    assert out[0][0] == "benchmark", "the table's header row changed; update this test"
    return out[1:]


def numbers(value: Any) -> Iterator[float]:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        yield float(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from numbers(v)


def shown_as(text: str, value: float) -> bool:
    """Is ``value`` what ``text`` shows, rounded to the digits ``text`` has?"""
    digits = text.replace(",", "").lstrip("+")
    shown = Decimal(digits)
    if "." in digits:
        unit = Decimal(1).scaleb(-len(digits.split(".")[1]))
    else:
        stripped = digits.lstrip("-")
        zeros = len(stripped) - len(stripped.rstrip("0")) if stripped != "0" else 0
        unit = Decimal(1).scaleb(zeros)
    return abs(Decimal(repr(value)) - shown) <= unit / 2 + Decimal("1e-9")


def figures_of(files: list[str]) -> list[float]:
    values: list[float] = []
    for name in files:
        data = json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))
        for key in ("summary", "params", "conditions", "machine"):
            values.extend(numbers(data[key]))
    return values


def test_the_table_has_rows() -> None:
    assert len(rows()) >= 10


@pytest.mark.parametrize("row", rows(), ids=lambda r: r[0][:40])
def test_every_figure_is_in_its_results(row: list[str]) -> None:
    bench, _what, figure, _goal, machine = row
    files = JSON_NAME.findall(bench)
    assert files, f"README row {bench!r} names no bench/results/*.json file"
    for name in files:
        assert (RESULTS / f"{name}.json").exists(), f"{name}.json named in the README is missing"
    values = figures_of(files)
    for cell in (figure, machine):
        for match in NUMBER.finditer(cell):
            text = match.group()
            assert any(shown_as(text, v) for v in values), (
                f"README row {bench!r}: {text!r} in {cell!r} is not a figure of "
                f"{', '.join(f + '.json' for f in files)}")


def test_every_result_file_is_in_the_table() -> None:
    named = {name for row in rows() for name in JSON_NAME.findall(row[0])}
    on_disk = {p.stem for p in RESULTS.glob("*.json")}
    assert on_disk <= named, f"results not in the README table: {sorted(on_disk - named)}"


def test_every_result_file_has_the_one_layout() -> None:
    for path in RESULTS.glob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert set(data) == {"benchmark", "what", "goal", "machine", "conditions", "params",
                             "summary", "runs"}, path.name
        assert data["benchmark"] == path.stem
        assert data["conditions"]["note"], path.name


@pytest.mark.parametrize(("text", "value", "ok"), [
    ("520,000", 519_889.8, True), ("520,000", 514_000.0, False), ("6.1", 6.086, True),
    ("6.1", 6.16, False), ("12,497", 12_497.4, True), ("12,497", 12_498.0, False),
    ("+24.6", 24.6, True), ("0", 0.0, True), ("0.0121", 0.01214, True)])
def test_rounding_rule(text: str, value: float, ok: bool) -> None:
    assert shown_as(text, value) is ok
