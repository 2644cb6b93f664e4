"""The fleet ACL of docs/fleet.md, enforced by a real mosquitto (issue 18).

config/fleet/mosquitto-acl and the options of config/fleet/mosquitto-fleet.conf are loaded
as shipped. A gateway reaches its own subtree only: it cannot publish as another gateway,
cannot receive another's commands, and cannot take another's client id (and so its
session). The cloud user reads every gateway and commands any of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest

from tests.support.mosquitto import Mosquitto

ROOT = Path(__file__).resolve().parents[3]
USERS = {"gw-a": "pw-a-123", "gw-b": "pw-b-456", "cloud": "pw-cloud-789"}


def fleet_options() -> str:
    """mosquitto-fleet.conf's active lines, minus the file locations a test supplies."""
    lines = (ROOT / "config/fleet/mosquitto-fleet.conf").read_text().splitlines()
    keep = [ln for ln in lines if ln and not ln.startswith("#")
            and not ln.startswith(("acl_file", "allow_anonymous"))]
    return "\n".join(keep) + "\n"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    acl = ROOT / "config/fleet/mosquitto-acl"
    b = Mosquitto(tmp_path, users=USERS,
                  extra_config=fleet_options() + f"acl_file {acl}\n")
    b.start()
    yield b
    b.stop()


@contextlib.asynccontextmanager
async def client(broker: Mosquitto, user: str, client_id: str | None = None,
                 ) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(broker.host, broker.port, username=user,
                              password=USERS[user], identifier=client_id or user) as c:
        yield c


async def received(c: aiomqtt.Client, seconds: float) -> list[str]:
    got: list[str] = []

    async def collect() -> None:
        async for message in c.messages:
            got.append(f"{message.topic} {message.payload!r}")

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(collect(), seconds)
    return got


async def test_a_gateway_reaches_only_its_own_subtree(broker: Mosquitto) -> None:
    async with client(broker, "cloud") as cloud, client(broker, "gw-a") as gw_a:
        await cloud.subscribe("fieldgate/#", qos=1)
        await gw_a.publish("fieldgate/gw-a/telemetry", b"mine", qos=1)
        await gw_a.publish("fieldgate/gw-b/telemetry", b"forged", qos=1)
        await gw_a.publish("fieldgate/gw-b/events", b"forged", qos=1)
        got = await received(cloud, 1.0)
    assert got == ["fieldgate/gw-a/telemetry b'mine'"]
    denied = re.findall(r"Denied PUBLISH from gw-a .*'fieldgate/gw-b/\w+'", broker.log_text())
    assert len(denied) == 2


async def test_a_gateway_cannot_receive_another_gateways_commands(broker: Mosquitto) -> None:
    async with client(broker, "gw-a") as gw_a, client(broker, "cloud") as cloud:
        await gw_a.subscribe("fieldgate/gw-a/cmd/+", qos=1)
        await gw_a.subscribe("fieldgate/gw-b/cmd/+", qos=1)
        await gw_a.subscribe("fieldgate/+/cmd/+", qos=1)
        await cloud.publish("fieldgate/gw-b/cmd/write", b'{"id": "x"}', qos=1)
        await cloud.publish("fieldgate/gw-a/cmd/ping", b'{"id": "y"}', qos=1)
        got = await received(gw_a, 1.0)
    # Its own command once per matching subscription; never gw-b's.
    assert got and all(g.startswith("fieldgate/gw-a/cmd/ping") for g in got)


async def test_a_gateway_cannot_take_another_gateways_client_id(broker: Mosquitto) -> None:
    """use_username_as_clientid: gw-a asking for client id gw-b is connected as gw-a, so
    the real gw-b keeps its session instead of being kicked off."""
    async with client(broker, "gw-b") as gw_b, client(broker, "cloud") as cloud:
        await gw_b.subscribe("fieldgate/gw-b/cmd/+", qos=1)
        async with client(broker, "gw-a", client_id="gw-b") as impostor:
            await impostor.publish("fieldgate/gw-b/status", b"forged", qos=1)
        await cloud.publish("fieldgate/gw-b/cmd/ping", b'{"id": "z"}', qos=1)
        got = await received(gw_b, 1.0)
    assert got == ["fieldgate/gw-b/cmd/ping b'{\"id\": \"z\"}'"]
    assert "Denied PUBLISH from gw-a" in broker.log_text()


async def test_anonymous_and_wrong_passwords_are_refused(broker: Mosquitto) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(broker.host, broker.port, identifier="gw-a"):
            pass
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(broker.host, broker.port, username="gw-a",
                                  password="wrong", identifier="gw-a"):
            pass
