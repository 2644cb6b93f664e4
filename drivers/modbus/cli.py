"""placeholder"""
from typing import Any


def install_cli(subparsers: Any) -> None:
    return None
