"""Every broken config of :mod:`.cases` gives its located messages and exit code 78, fast,
without touching the state directory."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config.errors import EX_CONFIG

from .cases import CASES, write


@pytest.mark.parametrize(("name", "content", "expected"), CASES, ids=[c[0] for c in CASES])
def test_broken_config_gives_located_messages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str | bytes,
    expected: list[str],
) -> None:
    path = write(tmp_path, content)
    started = time.monotonic()
    assert main(["check-config", str(path)]) == EX_CONFIG, name
    assert time.monotonic() - started < 10, f"{name}: check-config took too long"
    err = capsys.readouterr().err
    for fragment in expected:
        assert fragment in err, f"{name}: {fragment!r} not in\n{err}"
    assert "Traceback" not in err
    assert not (tmp_path / "state").exists(), "nothing may be touched on a config error"


def test_daemon_with_a_missing_ca_file_exits_78_naming_it(tmp_path: Path) -> None:
    """Before: check-config passed, then `run` crash-looped in the uplink with tracebacks."""
    import subprocess
    import sys

    content = next(c for name, c, _ in CASES if name == "missing tls ca_file")
    path = write(tmp_path, content)
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run([sys.executable, "-m", "gateway", "run", "-c", str(path)], cwd=root,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == EX_CONFIG, proc.stderr
    assert "uplink.broker.tls.ca_file: cannot read '/nonexistent/fieldgate/ca.pem'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_broad_rule_selectors_warn_but_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pattern, tag or profile selector is deliberately broad: what it misses today is a
    warning, and the config loads. A device whose points only its driver knows (SunSpec)
    is never reported."""
    from .cases import SITE

    path = write(tmp_path, SITE + """\
rules:
  alarms:
    - {name: a, devices: ["pv-*"], kind: offline}
    - {name: b, tags: [mian], kind: offline}
    - {name: c, devices: ["main-*", "plc-*"], point: frequency_hz, condition: {op: ">", value: 1}}
    - {name: d, devices: ["sunspec-*"], point: anything, condition: {op: ">", value: 1}}
    - {name: e, profiles: [eastron-sdm630], point: power_total, condition: {op: ">", value: 1}}
    - {name: f, profiles: [eastron-sdm63], kind: offline}
""")
    assert main(["check-config", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "site.yaml:21:27 warning: rules.alarms[0].devices[0]: the pattern 'pv-*' matches "
        "no device today",
        "site.yaml:22:24 warning: rules.alarms[1].tags[0]: no device carries the tag 'mian'; "
        "did you mean 'main'?",
        "site.yaml:23:54 warning: rules.alarms[2].point: no selected device has point "
        "'frequency_hz', so this can never fire; did you mean 'frequency'?",
        "site.yaml:26:28 warning: rules.alarms[5].profiles[0]: no device uses the profile "
        "'eastron-sdm63'; did you mean 'eastron-sdm630'?",
    ], captured.err
    assert "ok (3 devices, 4 warnings)" in captured.out
