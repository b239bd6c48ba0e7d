"""The command line: one error path for every sub-command (one line on stderr and exit code 2
for a user error; the traceback with --debug), and help that is fast and loads no torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trnet.cli import COMMANDS, main
from trnet.utils import UserError

SRC = Path(__file__).resolve().parents[1] / "src"

# command -> arguments that are wrong in a way only the command's run can tell (not argparse)
BAD: dict[str, list[str]] = {
    "demo": ["--quick", "--se", "identity", "--out", "{tmp}/demo", "--address", "auto"],
    "prepare": ["emodb", "--root", "{tmp}/no-such-corpus", "--out", "{tmp}/out"],
    "conditions": ["--corpus", "{tmp}/no-such.csv", "--out", "{tmp}/store"],
    "train": ["--config", "trnett", "--fold", "0", "--store", "{tmp}", "--out", "{tmp}/runs"],
    "reproduce": ["{tmp}/no-such-recipe.toml"],
    "report": ["{tmp}/no-such-results"],
    "select": ["{tmp}/no-such-runs.csv", "--alias", "best"],
    "complexity": ["--encoder", "transformer"],
    "predict": ["{tmp}/a.wav", "--model", "{tmp}/no-such-run"],
    "export": ["--model", "{tmp}/no-such-run", "--format", "onnx", "--out", "{tmp}/m.onnx"],
    "enhance": ["{tmp}/a.wav", "--se", "no-such-se", "--out", "{tmp}/enhanced"],
    "models": ["--dir", "{tmp}/no-such-folder"],
    "bundle": ["{tmp}/no-such-recipe.toml"],
}


def test_every_command_is_in_the_table() -> None:
    assert set(BAD) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(BAD))
def test_a_user_error_is_one_line_and_exit_2(command: str, tmp_path: Path, capsys) -> None:
    args = [a.format(tmp=tmp_path) for a in BAD[command]]
    assert main([command, *args]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith(f"trnet {command}: error: "), err
    with pytest.raises((UserError, OSError)):  # --debug: the exception itself, with its traceback
        main(["--debug", command, *args])
    with pytest.raises((UserError, OSError)):  # and at the end of the line, as one adds it to a failed command
        main([command, *args, "--debug"])


# arguments argparse itself refuses -> the prefix of its one line
ARGPARSE_BAD = {
    "unknown command": (["bogus"], "trnet: error: argument COMMAND: invalid choice: 'bogus'"),
    "invalid choice": (["select", "x", "--alias", "a", "--among", "bogus"], "trnet select: error: argument --among"),
    "missing argument": (["predict"], "trnet predict: error: the following arguments are required: AUDIO"),
    "unknown option": (["models", "--bogus"], "trnet: error: unrecognized arguments: --bogus"),
    "not a number": (["complexity", "--width", "x"], "trnet complexity: error: argument --width: invalid int"),
    "exclusive options": (["predict", "a.wav", "--json", "--csv"], "trnet predict: error: argument --csv"),
}


@pytest.mark.parametrize("case", sorted(ARGPARSE_BAD))
def test_argparse_refusals_are_one_line_too(case: str, capsys) -> None:
    args, start = ARGPARSE_BAD[case]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and err.startswith(start), err
    assert "usage:" not in err and err.rstrip().endswith("--help`)")


@pytest.mark.parametrize("command", ["", *sorted(COMMANDS)])
def test_help_loads_no_heavy_library(command: str) -> None:
    """`trnet <cmd> --help` stays fast (0.3-0.6 s measured; timings belong in benchmarks, not
    tests) because it imports no torch, scipy, matplotlib or onnxruntime: that is checked here."""
    code = (
        "import sys; from trnet.cli import main\n"
        f"try: main({[command, '--help'] if command else ['--help']})\n"
        "except SystemExit: pass\n"
        "print(sorted(m for m in ('torch', 'scipy', 'matplotlib', 'onnxruntime') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(SRC)}
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]", f"`trnet {command} --help` imported {proc.stdout}"
