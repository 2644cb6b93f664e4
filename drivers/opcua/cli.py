"""Commissioning: ``fieldgate opcua browse URL [node]`` prints the address-space tree with the
node ids and data types an engineer copies into the device config."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from drivers.opcua import liblog

if TYPE_CHECKING:  # asyncua loads when a command runs, not at parse time
    from asyncua import Node

PASSWORD_ENV = "FIELDGATE_OPCUA_PASSWORD"


def install_cli(subparsers: Any) -> None:
    opcua = subparsers.add_parser("opcua", help="OPC-UA commissioning tools")
    sub = opcua.add_subparsers(dest="opcua_command", required=True)
    browse = sub.add_parser(
        "browse",
        help="print the address-space tree with node ids and types",
        description=(
            "Browse an OPC-UA server from NODE (default: the Objects folder) and print each "
            "node's browse name, node id, class and data type. The password is read from "
            f"${PASSWORD_ENV}."
        ),
    )
    browse.add_argument("url", help="endpoint, e.g. opc.tcp://10.0.0.5:4840")
    browse.add_argument("node", nargs="?", default="i=85", help="start node id (default i=85)")
    browse.add_argument("--depth", type=int, default=4, help="levels to descend (default 4)")
    browse.add_argument("--user", help="username (password from the environment)")
    browse.add_argument(
        "--security",
        help="Policy,Mode,cert,key e.g. Basic256Sha256,SignAndEncrypt,cert.der,key.pem; the "
        "client's application URI is taken from the certificate (the gateway's generated one "
        "is <state_dir>/opcua/<device>/client_cert.der)",
    )
    browse.add_argument("--timeout", type=float, default=5.0, help="request timeout, seconds")
    browse.set_defaults(func=browse_command)


def browse_command(args: argparse.Namespace) -> int:
    import asyncio  # here: `fieldgate --help` and `cmd` need no event loop

    from asyncua import ua

    from drivers.opcua.security import refused_certificate_reason

    liblog.install()  # asyncua's handshake errors are ours to report, once
    try:
        return asyncio.run(browse(args, sys.stdout))
    except (OSError, TimeoutError, ua.UaError, AssertionError) as err:
        cert = _security_parts(args)[2] if args.security else None
        refused = refused_certificate_reason(err, cert) if cert is not None else None
        if refused is not None:
            print(f"error: cannot browse {args.url}: {refused}.", file=sys.stderr)
            return 2
        print(
            f"error: cannot browse {args.url}: {type(err).__name__}: {err}. Check the url, "
            "that the server is up, and the security settings.",
            file=sys.stderr,
        )
        return 2


def _security_parts(args: argparse.Namespace) -> tuple[str, str, Path, Path]:
    parts = args.security.split(",")
    if len(parts) != 4:
        raise ValueError(
            f"--security takes Policy,Mode,cert,key, e.g. Basic256Sha256,SignAndEncrypt,"
            f"cert.der,key.pem; got {args.security!r}"
        )
    return parts[0], parts[1], Path(parts[2]), Path(parts[3])


async def browse(args: argparse.Namespace, out: TextIO) -> int:
    import asyncio

    from asyncua import Client, ua

    from drivers.opcua.security import certificate_uri

    client = Client(args.url, timeout=args.timeout)
    client.session_timeout = 60_000  # a short-lived session; servers cap long ones anyway
    if args.user:
        client.set_user(args.user)
        client.set_password(os.environ.get(PASSWORD_ENV, ""))
    if args.security:
        try:
            _policy, _mode, cert, _key = _security_parts(args)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        # The server checks that our application URI is the one in our certificate.
        client.application_uri = certificate_uri(cert) or client.application_uri
        await client.set_security_string(args.security)
    try:
        start = ua.NodeId.from_string(args.node)
    except (ValueError, ua.UaError):
        print(f"error: {args.node!r} is not a node id (e.g. ns=2;s=Name or i=85)", file=sys.stderr)
        return 2
    async with asyncio.timeout(args.timeout * 3):
        await client.connect()
    try:
        await _print_tree(client.get_node(start), 0, args.depth, out)
    finally:
        await client.disconnect()
    return 0


async def _print_tree(node: Node, level: int, depth: int, out: TextIO) -> None:
    from asyncua import ua

    from drivers.opcua.convert import value_of

    name = await node.read_browse_name()
    node_class = await node.read_node_class()
    indent = "  " * level
    line = f"{indent}{name.NamespaceIndex}:{name.Name}  [{node.nodeid.to_string()}]  "
    line += node_class.name
    if node_class is ua.NodeClass.Variable:
        try:
            vtype = await node.read_data_type_as_variant_type()
            line += f"  {vtype.name}"
            dv = await node.read_data_value(raise_on_bad_status=False)
            value, ok = value_of(dv.Value.Value if dv.Value is not None else None)
            line += f" = {value!r}" if ok else " = <not a scalar>"
            if dv.StatusCode is not None and not dv.StatusCode.is_good():
                line += f" ({dv.StatusCode.name})"
        except ua.UaError as err:
            line += f"  <unreadable: {err}>"
    print(line, file=out)
    if level >= depth:
        return
    for child in await node.get_children():
        await _print_tree(child, level + 1, depth, out)
