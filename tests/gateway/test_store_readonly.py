"""A store file (or directory) the daemon's user cannot write: one line naming the file and
what to do, exit 73 (not restarted by systemd), never a traceback.

As root (CI), the daemon is a forked child that drops to ``nobody`` (root writes any file);
as another user it is a plain ``fieldgate run``."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gateway import cli
from gateway.config.loader import load_config
from gateway.store import Store
from gateway.store.errors import EX_CANTCREAT
from gateway.store.opening import is_read_only
from tests.support.daemon import fieldgate

NOBODY = 65534
ROOT_USER = os.geteuid() == 0


@pytest.fixture
def site() -> Iterator[tuple[Path, Path]]:
    """A site config and its state directory, in a folder every user may enter; the state
    directory belongs to the user the daemon will run as."""
    root = Path(tempfile.mkdtemp(prefix="fg-ro-"))
    os.chmod(root, 0o755)
    state = root / "state"
    state.mkdir(mode=0o755)
    if ROOT_USER:
        os.chown(state, NOBODY, NOBODY)
    path = root / "site.yaml"
    path.write_text(yaml.safe_dump({
        "gateway": {"id": "ro-gw", "state_dir": str(state)},
        "devices": [{"id": "m", "type": "simulated", "enabled": False}]}))
    os.chmod(path, 0o644)
    try:
        yield path, state
    finally:
        shutil.rmtree(root, ignore_errors=True)


def make_store(path: Path) -> None:
    async def build() -> None:
        store = Store(path)
        await store.open()
        await store.close()

    asyncio.run(build())


def run_daemon(config: Path) -> tuple[int, str]:
    """``fieldgate run -c config`` as a user other than the owner of the files: its exit
    code and what it printed."""
    if not ROOT_USER:
        proc = fieldgate("run", "-c", str(config), timeout=60)
        return proc.returncode, proc.stdout + proc.stderr
    from tests.gateway.test_control_socket import as_user

    load_config(config)  # imported before dropping to nobody (who cannot read them)
    cli.build_parser()
    import gateway.runtime  # noqa: F401

    return as_user(NOBODY, NOBODY, lambda: cli.main(["run", "-c", str(config)]))


def assert_one_line(code: int, out: str, words: str) -> None:
    assert code == EX_CANTCREAT, out
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert words in lines[0] and f"exit code {EX_CANTCREAT}" in lines[0], lines[0]


def test_a_read_only_store_file_is_one_line_and_exit_73(site: tuple[Path, Path]) -> None:
    config, state = site
    store = state / "buffer.sqlite3"
    make_store(store)
    os.chmod(store, 0o444)
    code, out = run_daemon(config)
    assert_one_line(code, out, f"store file {store} is read-only for this user (mode 0444")
    assert "chown/chmod the file" in out and "point store.path elsewhere" in out


def test_a_read_only_state_directory_is_one_line_and_exit_73(
    site: tuple[Path, Path],
) -> None:
    config, state = site
    make_store(state / "buffer.sqlite3")
    if ROOT_USER:
        os.chown(state / "buffer.sqlite3", NOBODY, NOBODY)
        os.chown(state, 0, 0)  # the file is nobody's, its directory is not
    os.chmod(state, 0o555)
    try:
        code, out = run_daemon(config)
    finally:
        os.chmod(state, 0o755)
    assert_one_line(code, out, f"{state} is not writable by this user")


def test_sqlite_refusing_a_write_to_a_read_only_file_is_recognised(tmp_path: Path) -> None:
    """The fallback when the file looks writable but SQLite still refuses (a read-only file
    system): the same one line."""
    path = tmp_path / "b.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as caught:
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    assert is_read_only(caught.value)
    assert not is_read_only(sqlite3.OperationalError("database or disk is full"))
