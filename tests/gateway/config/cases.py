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
    unreadable:
      - {start: 100, end: 109}
    points:
      - {name: power, address: 0, type: float32}
      - {name: energy, address: 2, type: uint32}
      - {name: power, address: 4}
      - {name: label, address: 10, type: string, length: 130}
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
     ["site.yaml:11:6 bomb.g: aliases expand this to 2,111,111 values, more than the 1,000,000"]),
    ("recursive alias", GOOD + "loop: &x [*x]\n",
     ["site.yaml:11:7 loop[0]: an alias refers to a collection that contains it"]),
    ("nested too deeply", GOOD + "deep: " + "[" * 70 + "]" * 70 + "\n",
     ["site.yaml:11:71 deep" + "[0]" * 64 + ": nested more than 64 levels deep"]),
]


def write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "site.yaml"
    state = str(tmp_path / "state")
    if isinstance(content, bytes):
        path.write_bytes(content.replace(b"{state}", state.encode()))
    else:
        path.write_text(content.replace("{state}", state), encoding="utf-8")
    return path
