"""``fieldgate ocpp hash-password``: make the password_hash for a charger entry."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any


def install_cli(subparsers: Any) -> None:
    ocpp = subparsers.add_parser("ocpp", help="OCPP central system tools")
    sub = ocpp.add_subparsers(dest="ocpp_command", required=True)
    hp = sub.add_parser(
        "hash-password",
        help="hash a charger's Basic-auth password for password_hash",
        description="Reads the password from --password, stdin (when piped) or a prompt, "
        "and prints the scrypt hash to put in the charger's password_hash.",
    )
    hp.add_argument("--password", help="the clear password (visible in shell history!)")
    hp.set_defaults(func=_hash_password)


def _hash_password(args: argparse.Namespace) -> int:
    from drivers.ocpp.security import PasswordError, hash_password  # not at parse time

    password = args.password
    if password is None:
        password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else \
            getpass.getpass("charger password: ")
    try:
        print(hash_password(password))
    except PasswordError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
