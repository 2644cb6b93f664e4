"""A real mosquitto broker for tests: a free loopback port, a temp config, start/stop/pause.

    with Mosquitto(tmp_path) as broker:      # or: broker = Mosquitto(tmp_path); broker.start()
        ... connect to broker.host, broker.port ...
        broker.stop(); broker.start()        # an outage; the same port comes back
        broker.pause(); broker.resume()      # a dead link: TCP open, nothing answers

TLS and credentials (keyword-only, off by default)::

    Mosquitto(tmp_path, tls=TlsListener(ca_file, cert_file, key_file, require_certificate=True),
              users={"gw": "secret"})            # a password file; anonymous clients refused

Persistence is on, so a subscriber with a persistent session gets messages that were
queued for it across a restart (``stop`` is SIGTERM: mosquitto saves its database).
Set ``FIELDGATE_MOSQUITTO`` to use another binary.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

BINARY = os.environ.get("FIELDGATE_MOSQUITTO") or shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def available() -> bool:
    return Path(BINARY).exists()


@dataclass(frozen=True, slots=True)
class TlsListener:
    """The broker side of TLS (PEM files). ``ca_file`` verifies client certificates, which
    are demanded only with ``require_certificate``."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    require_certificate: bool = False

    def config_lines(self) -> str:
        return (
            f"cafile {self.ca_file}\n"
            f"certfile {self.cert_file}\n"
            f"keyfile {self.key_file}\n"
            f"require_certificate {'true' if self.require_certificate else 'false'}\n"
        )


def password_line(user: str, password: str, salt: bytes | None = None,
                  iterations: int = 101) -> str:
    """One line of a mosquitto 2.x password file: ``user:$7$<iterations>$<salt>$<hash>``,
    PBKDF2-HMAC-SHA512 over a 12-byte salt (what ``mosquitto_passwd`` writes). Generated
    here so the tests do not need ``mosquitto_passwd`` installed."""
    if ":" in user:
        raise ValueError("a mosquitto user name cannot contain ':'")
    salt = os.urandom(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return (f"{user}:$7${iterations}${base64.b64encode(salt).decode()}"
            f"${base64.b64encode(digest).decode()}")


class Mosquitto:
    def __init__(self, workdir: Path, port: int | None = None, extra_config: str = "", *,
                 tls: TlsListener | None = None,
                 users: Mapping[str, str] | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self.tls = tls
        self.dir = workdir / f"mosquitto-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        auth = "allow_anonymous true\n"
        if users is not None:
            passwd = self.dir / "passwd"
            passwd.write_text("".join(password_line(u, p) + "\n" for u, p in users.items()))
            passwd.chmod(0o600)
            auth = f"allow_anonymous false\npassword_file {passwd}\n"
        self.config.write_text(
            f"listener {self.port} {self.host}\n"
            # Listener options (TLS) must follow their `listener` line.
            + (tls.config_lines() if tls is not None else "")
            + auth +
            # Run as root (a container, CI), mosquitto would switch to the user
            # "mosquitto", which cannot write the log or persistence into a private tmp dir.
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            "max_queued_messages 1000000\n"
            "max_inflight_messages 100\n"
            "set_tcp_nodelay true\n"
            f"log_dest file {self.log}\n"
            "log_type all\n"
            + extra_config
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        if not available():
            if os.environ.get("CI"):  # CI installs it: a missing broker there is a failure
                pytest.fail(f"mosquitto not installed at {BINARY} (.ci/run installs it)")
            pytest.skip(f"mosquitto not installed at {BINARY} (apt-get install mosquitto)")
        self.proc = subprocess.Popen(
            [BINARY, "-c", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited at start ({self.proc.returncode}): {err}"
                                   f"\n{self.log_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait: a clean broker shutdown (the persistence file is written)."""
        if self.proc is None:
            return
        self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self._close()

    def pause(self) -> None:
        """SIGSTOP: sockets stay open but the broker answers nothing (a dead link)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def _close(self) -> None:
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A running broker for one test (import this fixture into a conftest.py)."""
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
