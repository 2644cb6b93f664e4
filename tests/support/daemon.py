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


#: A gateway process that does its imports and builds the config model, then waits for a
#: line on stdin before it runs ``fieldgate run`` exactly as ``python -m gateway`` would.
#: Kill loops start the next boot's process while the current one runs, so many restarts
#: do not each pay the interpreter start, the imports and the model build in series (that
#: is startup speed, measured in bench/startup.py; those tests are about what a kill leaves).
PRESTART = """
import sys
import aiomqtt, aiosqlite, pydantic
import drivers.simulated, gateway.cli, gateway.confmgmt.boot, gateway.logs, gateway.runtime
import gateway.config.loader, gateway.uplink.component, gateway.siteops.component
gateway.config.site.site_model({"simulated"})  # built once and cached, as the run would
sys.stdin.readline()
sys.exit(gateway.cli.main(sys.argv[1:]))
"""


def prestart(config: Path, *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    """A ``fieldgate run -c config *args`` that has done its imports; :func:`go` runs it."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    return subprocess.Popen(
        [sys.executable, "-c", PRESTART, "run", "-c", str(config), *args],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
        stdout=out, stderr=out if log else subprocess.PIPE,
    )


def go(proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """Let a :func:`prestart` process run."""
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.close()
    return proc


wait_for = wait_until_sync  # the shared polling helper, for code outside the event loop


def fieldgate(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
