"""Every subcommand explains itself; every error is one line and exit code 2."""

from __future__ import annotations

import socket

import pytest

from perflab.cli import build_parser, main

SUBCOMMANDS = [
    "demo",
    "run",
    "serve",
    "data",
    "load",
    "report",
    "compare",
    "ui",
    "capacity",
    "scale",
    "worker",
    "notebooks",
    "classroom",
]


def test_all_subcommands_have_help(capsys) -> None:
    choices = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert sorted(choices) == sorted(SUBCOMMANDS)
    for cmd in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: perflab {cmd}") and "options:" in out


def one_line_error(capsys, argv: list[str]) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("perflab"), err
    assert "Traceback" not in err
    return err


def test_errors_are_one_line(capsys, database_url, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert "unknown experiment 'nope'" in one_line_error(capsys, ["run", "nope"])
    assert "no variant 'fast'" in one_line_error(
        capsys, ["run", "queries", "--variants", "naive,fast", "--size", "tiny"]
    )
    assert "positive --rate" in one_line_error(capsys, ["run", "queries", "--rate", "0"])
    assert "positive --rate" in one_line_error(
        capsys, ["load", "--host", "http://127.0.0.1:9", "--path", "/", "--rate", "0"]
    )
    assert "invalid choice" in one_line_error(capsys, ["frobnicate"])
    assert "--users N" in one_line_error(
        capsys, ["load", "--host", "http://127.0.0.1:9", "--path", "/"]
    )
    assert "not a run folder" in one_line_error(capsys, ["report", "/nonexistent/run"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        err = one_line_error(capsys, ["serve", "catalog", "--port", str(port), "--size", "tiny"])
    assert f"port {port} is taken" in err
