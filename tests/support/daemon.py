"""Run ``fieldgate run`` as a real subprocess (for signal, crash and systemd tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.wait import wait_until_sync

ROOT = Path(__file__).resolve().parents[2]


def spawn(config: Path, env: dict[str, str] | None = None,
          log: Path | None = None) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "-c", str(config)],
        cwd=ROOT, env=full_env, stdout=out, stderr=out,
    )


wait_for = wait_until_sync  # the shared polling helper, for code outside the event loop


def fieldgate(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
