"""The control socket under hostile lines and other users (issue 13, items 7 and 12).

The daemon runs as a real subprocess (as root, as CI does); other users are forked children
of the test that drop to ``nobody`` before they touch the socket, so no second interpreter
has to be found on a path ``nobody`` may not read.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from gateway import cli
from gateway.config.loader import load_config
from gateway.control import MAX_LINE, peer_allowed, socket_path
from tests.support.daemon import spawn, wait_for

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as other users")


@contextlib.contextmanager
def daemon(umask: int = 0o022, **control: object) -> Iterator[tuple[Path, Path]]:
    """A gateway with one simulated device, its files in a world-enterable temp folder."""
    root = Path(tempfile.mkdtemp(prefix="fg-ctl-"))
    os.chmod(root, 0o755)
    config = {"gateway": {"id": "ctl-gw", "state_dir": str(root / "state")},
              "devices": [{"id": "sim", "type": "simulated", "interval": 0.5}]}
    if control:
        config["control"] = control
    path = root / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    os.chmod(path, 0o644)
    # Import here everything the forked children will need: as `nobody` they cannot read
    # the interpreter's own library when it lives under /root (pyenv), as in CI.
    load_config(path)
    cli.build_parser()
    old = os.umask(umask)
    try:
        proc = spawn(path, log=root / "log")
    finally:
        os.umask(old)
    try:
        wait_for(lambda: socket_path(root / "state").exists(), 60)
        yield path, root / "state"
    finally:
        proc.terminate()
        proc.wait(20)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def as_user(uid: int, gid: int, fn: Callable[[], int]) -> tuple[int, str]:
    """Run ``fn`` in a forked child as uid/gid; its exit code and its stdout+stderr."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            os.close(read)
            os.dup2(write, 1)
            os.dup2(write, 2)
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - pytest's capture is not ours
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            code = fn()
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as out:
        text = out.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), text


def _drop_to(uid: int, gid: int, groups: list[int], fn: Callable[[], int]) -> int:
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)
    return fn()


def talk(path: Path, *lines: bytes) -> list[dict[str, object]]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        replies = []
        stream = sock.makefile("rb")
        for line in lines:
            sock.sendall(line)
            replies.append(json.loads(stream.readline()))
        return replies


def test_socket_is_private_from_the_start_whatever_the_umask() -> None:
    with daemon(umask=0) as (_, state):
        sock = socket_path(state)
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(sock.parent).st_mode) == 0o700
        # The state directory and the buffer: 0750 / 0640 although the umask was 000.
        assert stat.S_IMODE(os.stat(state).st_mode) == 0o750
        assert stat.S_IMODE(os.stat(state / "buffer.sqlite3").st_mode) == 0o640


def test_bad_lines_get_errors_and_the_connection_stays_usable() -> None:
    with daemon() as (_, state):
        deep = b'{"id": "d", "name": "ping", "args": ' + b"[" * 30_000 + b"]" * 30_000 + b"}\n"
        huge = b'{"id": "h", "name": "ping", "pad": "' + b"x" * (MAX_LINE + 10) + b'"}\n'
        ping = b'{"id": "p", "name": "ping"}\n'
        nan = b'{"id": "n", "name": "write", "args": {"device": "sim", "point": "power_limit_w",' \
              b' "value": NaN}}\n'
        replies = talk(socket_path(state), deep, ping, huge, ping, b"[1, 2]\n", nan, ping)
        codes = [r.get("error", {}).get("code") if not r["ok"] else "ok"  # type: ignore[union-attr]
                 for r in replies]
        assert codes == ["bad_json", "ok", "line_too_long", "ok", "bad_request", "bad_json",
                         "ok"]


def test_other_users_get_one_line_not_a_traceback() -> None:
    with daemon() as (config, _):
        code, out = as_user(NOBODY, NOBODY, lambda: cli.main(["cmd", "ping", "-c",
                                                               str(config)]))
    assert code == 1, out
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    assert "permission denied on the control socket" in lines[0]


def test_a_configured_group_may_command_the_gateway() -> None:
    group = grp.getgrgid(NOBODY).gr_name
    with daemon(group=group) as (config, state):
        assert stat.S_IMODE(os.stat(state).st_mode) == 0o710
        assert os.stat(socket_path(state)).st_gid == NOBODY
        code, out = as_user(NOBODY, NOBODY, lambda: cli.main(["cmd", "ping", "-c",
                                                               str(config)]))
        assert code == 0, out
        assert json.loads(out)["result"]["gateway"] == "ctl-gw"
        # A supplementary member too (the kernel's SO_PEERGROUPS, not /proc).
        code, out = as_user(0, 0, lambda: _drop_to(
            NOBODY, 1, [NOBODY], lambda: cli.main(["cmd", "ping", "-c", str(config)])))
        assert code == 0, out
        # Someone outside the group cannot even reach it.
        code, out = as_user(NOBODY, 1, lambda: cli.main(["cmd", "ping", "-c", str(config)]))
        assert code == 1 and "permission denied" in out


def test_the_peer_is_checked_even_when_the_files_were_opened_up() -> None:
    """Defence in depth: an administrator's chmod does not open the gateway to everyone."""
    with daemon() as (_, state):
        sock = socket_path(state)
        for p in (state, sock.parent, sock):
            os.chmod(p, 0o777)

        def ping() -> int:
            with socket.socket(socket.AF_UNIX) as conn:
                conn.settimeout(10)
                conn.connect(str(sock))
                # The refusal comes before any request is read.
                print(conn.makefile("rb").readline().decode().strip())
            return 0

        code, out = as_user(NOBODY, NOBODY, ping)
    assert code == 0, out
    reply = json.loads(out)
    assert reply["ok"] is False and reply["error"]["code"] == "forbidden"


def test_peer_allowed() -> None:
    me = os.getpid()
    assert peer_allowed(me, 0, 0, None)
    assert peer_allowed(me, os.geteuid(), 0, None)
    assert not peer_allowed(me, 4242, 4242, None)
    assert peer_allowed(me, 4242, 4242, 4242)  # primary group
    groups = Path(f"/proc/{me}/status").read_text().split("Groups:")[1].split("\n")[0].split()
    if groups:
        assert peer_allowed(me, 4242, 4243, int(groups[0]))  # a supplementary group
    assert not peer_allowed(me, 4242, 4243, 4244)
