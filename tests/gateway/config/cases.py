"""Broken site configs and the located messages ``check-config`` must print for them.

One case per problem class: ``(name, file content, [expected "file:line:col path: message"
fragments])``. Every fragment must appear in the output, and the exit code must be 78.
"""

from __future__ import annotations

from pathlib import Path

GOOD = """\
gateway:
  id: site-1
  state_dir: {state}
devices:
  - id: meter-1
    type: simulated
    interval: 1
  - id: pv-1
    type: simulated
    kind: inverter
"""

MODBUS = """\
gateway:
  id: site-1
  state_dir: {state}
devices:
  - id: plc-1
    type: modbus
    host: 127.0.0.1
    max_registers: 4
    unreadable:
      - {start: 100, end: 109}
    points:
      - {name: power, address: 0, type: float32}
      - {name: energy, address: 2, type: uint32}
      - {name: power, address: 4}
      - {name: label, address: 10, type: string, length: 8}
      - {name: hidden, address: 104}
      - {name: energy, address: 20}
"""

OPCUA = """\
gateway:
  id: site-1
  state_dir: {state}
devices:
  - id: plc-2
    type: opcua
    url: opc.tcp://127.0.0.1:4840
    groups:
      - name: fast
        points:
          - {name: power, node: "ns=2;s=P"}
          - {name: power, node: "ns=2;s=Q"}
      - name: fast
        mode: polling
        points:
          - {name: soc, node: "ns=2;s=S", deadband: {value: 1}}
          - {name: power, node: "ns=2;s=R"}
"""

SITE = """\
gateway:
  id: site-1
  state_dir: {state}
devices:
  - id: main-meter
    type: modbus
    host: 127.0.0.1
    profile: eastron-sdm630
    tags: [main]
  - id: plc-1
    type: modbus
    host: 127.0.0.1
    points:
      - {name: power, address: 0}
  - id: sunspec-1
    type: modbus
    host: 127.0.0.1
    profile: sunspec
"""


def alias_bomb(levels: int = 9) -> str:
    lines = ["gateway:", "  id: site-1", "  state_dir: {state}", "bomb:", '  a: &a ["lol"]']
    for level in range(1, levels):
        prev, name = chr(ord("a") + level - 1), chr(ord("a") + level)
        lines.append(f"  {name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    return "\n".join(lines) + "\n"


CASES: list[tuple[str, str | bytes, list[str]]] = [
    # issue 13, item 8
    ("missing tls ca_file", GOOD + """\
uplink:
  broker:
    host: broker.example.com
    tls: {ca_file: /nonexistent/fieldgate/ca.pem}
""", ["site.yaml:14:20 uplink.broker.tls.ca_file: cannot read '/nonexistent/fieldgate/ca.pem': "
      "No such file or directory"]),
    ("not utf-8", GOOD.replace("kind: inverter", "kind: inverter # caf\xe9").encode("latin-1"),
     ["site.yaml:10:25 the file is not UTF-8 text (byte 0xe9 here)"]),
    ("duplicate id beside other errors",
     GOOD.replace("id: pv-1", "id: meter-1").replace("interval: 1", "interval: -2"),
     ["site.yaml:7:15 devices[0].interval: must be greater than 0",
      "site.yaml:8:9 devices[1].id: device id 'meter-1' is already used by devices[0]"]),
    ("alias bomb", alias_bomb(),
     ["site.yaml:10:6 bomb.f: aliases expand this document by more than the 1,000,000 "
      "values allowed (this anchor stands for 211,111; an alias bomb?)"]),
    # issue 12, Config checker item 1: device-level errors at the offending point's line
    ("modbus point problems at their lines", MODBUS, [
        "site.yaml:14:16 devices[0].points[2].name: point 'power' is listed twice",
        "site.yaml:15:9 devices[0].points[3]: point 'label' is longer than one read (4)",
        "site.yaml:16:9 devices[0].points[4]: point 'hidden' lies in an unreadable range",
        "site.yaml:17:16 devices[0].points[5].name: point 'energy' is listed twice",
    ]),
    ("opcua point problems at their lines", OPCUA, [
        "site.yaml:12:20 devices[0].groups[0].points[1].name: point name 'power' appears twice",
        "site.yaml:13:15 devices[0].groups[1].name: group names must be unique",
        "site.yaml:16:53 devices[0].groups[1].points[0].deadband: group 'fast' polls: deadbands",
        "site.yaml:17:20 devices[0].groups[1].points[1].name: point name 'power' is used in more "
        "than one group (also in groups[0])",
    ]),
    ("ocpp role problems at their keys", GOOD + """\
  - id: csms
    type: ocpp
    role: server
    connectors: 2
    simulate: "1.6"
""", ["site.yaml:14:17 devices[2].connectors: fields ['connectors', 'simulate'] belong to role: "
      "charger", "site.yaml:15:15 devices[2].simulate: fields ['connectors', 'simulate']"]),
    # issue 12, Config checker item 2: every device-level error, also beside field errors
    ("modbus device checks beside field errors",
     MODBUS.replace("    host: 127.0.0.1\n", "    host: 127.0.0.1\n    interval: -1\n").replace(
         "type: float32}\n", "type: float32}\n      - {name: bad, address: -5}\n"), [
        "site.yaml:8:15 devices[0].interval: must be greater than 0",
        "site.yaml:14:30 devices[0].points[1].address: must be greater than or equal to 0",
        "site.yaml:16:16 devices[0].points[3].name: point 'power' is listed twice",
        "site.yaml:17:9 devices[0].points[4]: point 'label' is longer than one read (4)",
        "site.yaml:18:9 devices[0].points[5]: point 'hidden' lies in an unreadable range",
        "site.yaml:19:16 devices[0].points[6].name: point 'energy' is listed twice",
    ]),
    ("opcua device checks beside field errors",
     OPCUA.replace('name: soc, node: "ns=2;s=S"', 'name: soc, node: "bogus"'), [
        "site.yaml:12:20 devices[0].groups[0].points[1].name: point name 'power' appears twice",
        "site.yaml:13:15 devices[0].groups[1].name: group names must be unique",
        "site.yaml:16:31 devices[0].groups[1].points[0].node: 'bogus' is not an OPC-UA node id",
        "site.yaml:17:20 devices[0].groups[1].points[1].name: point name 'power' is used in more "
        "than one group (also in groups[0])",
    ]),
    # issue 12, Config checker item 4: did you mean, for unknown keys everywhere
    ("did you mean a key one level down", GOOD + "uplink: {host: broker.example.com}\n",
     ["site.yaml:11:10 uplink.host: unknown key (check the spelling); "
      "did you mean `uplink.broker.host`?"]),
    ("did you mean a section", GOOD + "uplnk: {}\n",
     ["site.yaml:11:1 uplnk: unknown key (check the spelling); did you mean `uplink`?"]),
    ("did you mean a device key", GOOD.replace("    interval: 1", "    intervall: 1"),
     ["site.yaml:7:5 devices[0].intervall: unknown key (check the spelling); "
      "did you mean `devices[0].interval`?"]),
    ("did you mean a device type",
     GOOD.replace("type: simulated\n    kind", "type: modbsu\n    kind"),
     ["site.yaml:9:11 devices[1].type: unknown device type 'modbsu'; known types: "
      "modbus, ocpp, opcua, simulated; did you mean `modbus`?"]),
    ("did you mean in rules and nested sections", GOOD + """\
rules:
  alarms:
    - {name: hot, pointt: temp, condition: {op: ">", value: 1}}
    - {name: gone, kind: offline, devices: [meter-1], fro: 10}
  quotas:
    - {name: q, period: day, budget_kwh: 10, treshold: [1]}
store:
  max_byte: 1
uplink:
  broker: {host: h, tls: {cafile: x}}
""", ["site.yaml:13:19 rules.alarms[0].pointt: unknown key (check the spelling); "
      "did you mean `rules.alarms[0].point`?",
      "site.yaml:14:55 rules.alarms[1].fro: unknown key (check the spelling); "
      "did you mean `rules.alarms[1].for`?",
      "site.yaml:16:46 rules.quotas[0].treshold: unknown key (check the spelling); "
      "did you mean `rules.quotas[0].thresholds`?",
      "site.yaml:18:3 store.max_byte: unknown key (check the spelling); "
      "did you mean `store.max_bytes`?",
      "site.yaml:20:27 uplink.broker.tls.cafile: unknown key (check the spelling); "
      "did you mean `uplink.broker.tls.ca_file`?"]),
    # issue 12, Config checker item 3: rules and quotas checked against the devices
    ("rules and quotas against the devices", SITE + """\
rules:
  alarms:
    - {name: a, devices: [main-metre], point: power_total, condition: {op: ">", value: 1}}
    - {name: b, devices: [main-meter], point: voltage_v, condition: {op: ">", value: 1}}
    - {name: c, devices: [plc-1, main-meter], point: power, condition: {op: ">", value: 1}}
  quotas:
    - name: q
      period: day
      budget_kwh: 10
      devices: [plc-1]
      action: {limit_charging: {power_w: 1000, chargers: [cp-1]}}
""", ["site.yaml:21:27 rules.alarms[0].devices[0]: no device has the id 'main-metre'; "
      "did you mean 'main-meter'?",
      "site.yaml:22:47 rules.alarms[1].point: device 'main-meter' has no point 'voltage_v'; "
      "did you mean 'voltage_l1'?",
      "site.yaml:23:54 rules.alarms[2].point: device 'main-meter' has no point 'power'; did you",
      "site.yaml:25:7 rules.quotas[0].energy_point: device 'plc-1' has no point 'energy_wh'",
      "site.yaml:29:59 rules.quotas[0].action.limit_charging.chargers[0]: no charger has the id "
      "'cp-1'"]),
    ("device checks beside a bad required field",
     OPCUA.replace("url: opc.tcp://127.0.0.1:4840", "url: http://x"), [
        "site.yaml:7:10 devices[0].url: 'http://x': expected opc.tcp://host:port",
        "site.yaml:12:20 devices[0].groups[0].points[1].name: point name 'power' appears twice",
        "site.yaml:13:15 devices[0].groups[1].name: group names must be unique",
        "site.yaml:16:53 devices[0].groups[1].points[0].deadband: group 'fast' polls: deadbands",
        "site.yaml:17:20 devices[0].groups[1].points[1].name: point name 'power' is used in more "
        "than one group (also in groups[0])",
    ]),
    ("recursive alias", GOOD + "loop: &x [*x]\n",
     ["site.yaml:11:11 loop[0]: an alias refers to a collection that contains it"]),
    ("nested too deeply", GOOD + "deep: " + "[" * 70 + "]" * 70 + "\n",
     ["site.yaml:11:70 deep" + "[0]" * 63 + ": nested more than 64 levels deep"]),
]


def write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "site.yaml"
    state = str(tmp_path / "state")
    if isinstance(content, bytes):
        path.write_bytes(content.replace(b"{state}", state.encode()))
    else:
        path.write_text(content.replace("{state}", state), encoding="utf-8")
    return path


def _show(text: str) -> None:  # pragma: no cover - a helper to write new cases
    import tempfile

    from gateway.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        main(["check-config", str(write(Path(tmp), text))])
