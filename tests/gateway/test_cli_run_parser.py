"""`fieldgate run` builds only its own parser (the daemon keeps it for its lifetime; the
other commands' parsers and CLI modules are ~0.25 MB, issue 11): same help and errors."""

from __future__ import annotations

import pytest

from gateway.cli import _command, build_parser, main


@pytest.mark.parametrize(("argv", "expected"), [
    (["run"], "run"),
    (["run", "-c", "x.yaml"], "run"),
    (["-c", "x.yaml", "run"], "run"),
    (["--config", "x.yaml", "run"], "run"),
    (["--config=x.yaml", "run"], "run"),
    (["-cx.yaml", "run"], "run"),
    ([], None),
    (["--help"], None),
    (["--version"], None),
    (["cmd", "run"], None),
    (["-c", "run", "status"], None),  # `run` is the file name here
    (["check-config", "run"], None),
])
def test_only_a_run_command_gets_the_short_parser(argv: list[str], expected: str | None
                                                   ) -> None:
    assert _command(argv) == expected


def _output(run: object, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        run()  # type: ignore[operator]
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


@pytest.mark.parametrize("argv", [["run", "--help"], ["run", "--bogus"],
                                  ["-c", "x.yaml", "run", "--log-level", "LOUD"]])
def test_run_help_and_errors_are_those_of_the_full_parser(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    short = _output(lambda: main(argv), capsys)
    full = _output(lambda: build_parser().parse_args(argv), capsys)
    assert short == full
    assert short[1] or short[2]  # it did print something


def test_the_short_parser_has_run_only() -> None:
    assert build_parser(only="run").parse_args(["run"]).func.__name__ == "_run"
    with pytest.raises(SystemExit):
        build_parser(only="run").parse_args(["status"])
