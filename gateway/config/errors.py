"""Config errors that name the file, line, column and field path of every problem."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EX_CONFIG = 78


@dataclass(frozen=True)
class ConfigIssue:
    file: Path
    line: int  # 1-based; 0 when unknown
    column: int
    path: str  # e.g. devices[2].poll_interval
    message: str
    severity: str = "error"  # or "warning": reported, but the config still loads

    def __str__(self) -> str:
        where = f"{self.file.name}:{self.line}:{self.column}" if self.line else str(self.file)
        if self.severity != "error":
            where = f"{where} {self.severity}:"
        return f"{where} {self.path}: {self.message}" if self.path else f"{where} {self.message}"


class ConfigError(Exception):
    """Every problem found in a config file, all at once."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.line, i.column, i.path))
        super().__init__("\n".join(str(i) for i in self.issues))

    @property
    def exit_code(self) -> int:
        return EX_CONFIG
