"""``fieldgate cmd``, ``status`` and ``devices`` are quick: they read the site file only for
its state directory and talk to the daemon over a plain socket (issue 16 item 5).

The import checks run in a fresh interpreter, since this test process has imported
everything; the daemon they talk to is a real ``fieldgate run`` subprocess.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gateway import cli
from gateway.config.errors import EX_CONFIG
from gateway.control_client import ControlUnreachable, request, socket_path, state_dir_of
from tests.support.daemon import spawn, wait_for

ROOT = Path(__file__).resolve().parents[2]
#: What a call that only talks to the socket must not load: the config models and their
#: validation, the runtime, plugins, drivers and their libraries, the event loop, HTTP.
HEAVY = ("pydantic", "gateway.config.loader", "gateway.config.site", "gateway.runtime",
         "hooks", "pluggy", "drivers.simulated", "pymodbus", "asyncua", "ocpp", "aiosqlite",
         "asyncio", "aiohttp", "aiomqtt")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A running gateway with one simulated device; yields its site file."""
    root = tmp_path_factory.mktemp("cli-ctl")
    path = root / "site.yaml"
    path.write_text(yaml.safe_dump({
        "gateway": {"id": "cli-gw", "state_dir": str(root / "state")},
        "uplink": {"enabled": False},
        "devices": [{"id": "sim", "type": "simulated", "interval": 0.2}]}))
    proc = spawn(path, log=root / "log")
    try:
        wait_for(lambda: socket_path(root / "state").exists(), 60)
        yield path
    finally:
        proc.terminate()
        proc.wait(20)


def run_fresh(args: list[str]) -> tuple[int, str, list[str]]:
    """``fieldgate ARGS`` through gateway.cli.main in a fresh interpreter: its exit code,
    its stdout and which HEAVY modules it loaded."""
    probe = textwrap.dedent(f"""
        import contextlib, io, json, sys
        from gateway.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            code = main({args!r})
        print(json.dumps([code, out.getvalue(),
                          sorted(m for m in {HEAVY!r} if m in sys.modules)]))
    """)
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    code, out, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    return code, out, loaded


def test_cmd_talks_to_the_daemon_without_loading_the_config_models(site: Path) -> None:
    code, out, loaded = run_fresh(["cmd", "ping", "-c", str(site)])
    assert code == 0, out
    assert json.loads(out)["result"]["gateway"] == "cli-gw"
    assert loaded == []


def test_status_and_devices_load_none_of_it_either(site: Path) -> None:
    def polled() -> bool:  # the simulated device's first values are in
        out = run_fresh(["devices", "-c", str(site), "--json"])[1]
        return bool(out) and any(d["points"] for d in json.loads(out))

    wait_for(polled, 30)
    code, out, loaded = run_fresh(["status", "-c", str(site)])
    assert code == 0, out
    assert "gateway  cli-gw" in out and "sim" in out
    assert loaded == []
    code, out, loaded = run_fresh(["devices", "-c", str(site), "--json"])
    assert code == 0, out
    devices = json.loads(out)
    assert [d["id"] for d in devices] == ["sim"] and devices[0]["points"]
    assert loaded == []


def test_c_before_cmd_and_several_commands_on_one_connection(site: Path) -> None:
    code, out, _ = run_fresh(["-c", str(site), "cmd", "commands.list"])
    assert code == 0 and "devices.list" in out
    state = state_dir_of(site)
    assert state is not None
    replies = request(state, [("ping", {}), ("nope", {}), ("ping", {})])
    assert [r["ok"] for r in replies] == [True, False, True]


def test_state_dir_of_reads_the_raw_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "site.yaml"
    f.write_text("gateway: {id: g}\n")
    assert state_dir_of(f) == Path("/var/lib/fieldgate")  # the model's default
    monkeypatch.setenv("FG_TEST_STATE", "/srv/fg")
    f.write_text("gateway: {id: g, state_dir: '${FG_TEST_STATE}/a'}\n")
    assert state_dir_of(f) == Path("/srv/fg/a")
    f.write_text("gateway: {id: g, state_dir: '${FG_TEST_UNSET:-/opt/fg}'}\n")
    assert state_dir_of(f) == Path("/opt/fg")
    for text in ("gateway: {id: g, state_dir: '${FG_TEST_UNSET}'}\n",  # the loader's error
                 "gateway: [1]\n", "- a\n", "gateway: {state_dir: 5}\n", "{{{\n"):
        f.write_text(text)
        assert state_dir_of(f) is None, text
    assert state_dir_of(tmp_path / "missing.yaml") is None


def test_a_file_it_cannot_read_quickly_is_reported_as_the_loader_would(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "site.yaml"
    f.write_text("gateway: {id: g, state_dir: '${FG_TEST_UNSET}'}\n")
    assert cli.main(["cmd", "ping", "-c", str(f)]) == EX_CONFIG
    err = capsys.readouterr().err
    assert "FG_TEST_UNSET is not set" in err and "site.yaml:1" in err


def test_not_running_and_no_answer_are_one_line_each(tmp_path: Path) -> None:
    with pytest.raises(ControlUnreachable, match="the gateway is not running"):
        request(tmp_path, [("ping", {})])
    path = socket_path(tmp_path)
    path.parent.mkdir()
    with socket.socket(socket.AF_UNIX) as server:  # a peer that accepts and never answers
        server.bind(str(path))
        server.listen()
        accepted: list[socket.socket] = []
        thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]))
        thread.start()
        with pytest.raises(ControlUnreachable, match=r"did not answer ping within 0\.3 s"):
            request(tmp_path, [("ping", {})], timeout=0.3)
        thread.join(10)
        for conn in accepted:
            conn.close()


def test_config_get_loads_none_of_it_either(site: Path) -> None:
    code, out, loaded = run_fresh(["config", "get", "-c", str(site)])
    assert code == 0, out
    assert "id: cli-gw" in out and "# version 1," in out
    assert loaded == []
