import argparse

import pytest

from segcore.cli import run_cli
from segcore.errors import InputError

SEEN = {}


def add_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, help="in")
    p.add_argument("--seed", type=int, default=0, help="seed")


def run_ok(args: argparse.Namespace) -> None:
    SEEN.update(vars(args))


def run_bad(args: argparse.Namespace) -> None:
    raise InputError(args.input, "is broken")


STAGES = [
    ("ok", "a stage", "tests.segcore.test_cli:add_opts", "tests.segcore.test_cli:run_ok"),
    ("bad", "a failing stage", "tests.segcore.test_cli:add_opts", "tests.segcore.test_cli:run_bad"),
]


def test_config_file_gives_defaults_and_command_line_wins(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("input: from_config\nseed: 7\n")
    assert run_cli("prog", "d", STAGES, ["ok", "--config", str(cfg)]) == 0
    assert SEEN["input"] == "from_config" and SEEN["seed"] == 7
    assert run_cli("prog", "d", STAGES, ["ok", "--config", str(cfg), "--seed", "3"]) == 0
    assert SEEN["seed"] == 3


def test_unknown_config_key_is_an_input_error(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("input: x\nsede: 7\n")
    assert run_cli("prog", "d", STAGES, ["ok", "--config", str(cfg)]) == 2
    assert "unknown option 'sede'" in capsys.readouterr().err


def test_input_error_exits_2_naming_the_file(capsys):
    assert run_cli("prog", "d", STAGES, ["bad", "--input", "scan.nii.gz"]) == 2
    assert "error: scan.nii.gz: is broken" in capsys.readouterr().err


def test_help_lists_stages_and_unknown_stage(capsys):
    assert run_cli("prog", "d", STAGES, ["--help"]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "a failing stage" in out
    assert run_cli("prog", "d", STAGES, ["nope"]) == 2
    with pytest.raises(SystemExit) as exc:
        run_cli("prog", "d", STAGES, ["ok", "--help"])
    assert exc.value.code == 0
    assert "(default: 0)" in capsys.readouterr().out
