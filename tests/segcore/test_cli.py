import argparse
import dataclasses
from dataclasses import dataclass

import pytest

from segcore.cli import run_cli
from segcore.config import option
from segcore.errors import InputError

SEEN = {}


@dataclass
class Opts:
    input: str = option(None, "in", required=True)
    seed: int = option(0, "seed")


def run_ok(cfg: Opts) -> None:
    SEEN.update(dataclasses.asdict(cfg))


def run_bad(cfg: Opts) -> None:
    raise InputError(cfg.input, "is broken")


STAGES = [
    ("ok", "a stage", "tests.segcore.test_cli:Opts", "tests.segcore.test_cli:run_ok"),
    ("bad", "a failing stage", "tests.segcore.test_cli:Opts", "tests.segcore.test_cli:run_bad"),
]


def test_a_stage_without_a_typed_config_is_refused():
    with pytest.raises(TypeError, match="typed config"):
        run_cli("prog", "d", [("raw", "x", "argparse:ArgumentParser", "tests.segcore.test_cli:run_ok")], ["raw"])


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


def test_per_seed_args_pairs_seeds_with_outputs_and_checks_them_up_front(tmp_path):
    from pathlib import Path

    from segcore.config import FinetuneConfig, add_options, from_namespace, typed_value
    from segcore.stages.finetune import seed_runs

    p = argparse.ArgumentParser()
    add_options(p, FinetuneConfig)

    def per_seed_args(ns: argparse.Namespace) -> list:
        return seed_runs(from_namespace(FinetuneConfig, ns))

    base = ["--data", str(tmp_path)]
    runs = per_seed_args(p.parse_args([*base, "--seed", "4", "2", "--out", str(tmp_path / "a"), str(tmp_path / "b")]))
    assert [(r.seed, r.out) for r in runs] == [(4, tmp_path / "a"), (2, tmp_path / "b")]
    assert all(isinstance(r.seed, int) and isinstance(r.out, Path) for r in runs)
    # a --config file gives scalars: one run
    scalars = {
        "data": tmp_path,
        "seed": typed_value(FinetuneConfig, "seed", 3),
        "out": typed_value(FinetuneConfig, "out", str(tmp_path / "c")),
        "devices": "1",
    }
    one = seed_runs(from_namespace(FinetuneConfig, scalars))
    assert [(r.seed, r.out) for r in one] == [(3, tmp_path / "c")]

    with pytest.raises(InputError, match="one --out per --seed"):
        per_seed_args(p.parse_args([*base, "--seed", "0", "1", "--out", str(tmp_path / "a")]))
    with pytest.raises(InputError, match="more than once"):
        per_seed_args(
            p.parse_args([*base, "--seed", "0", "1", "--out", str(tmp_path / "a"), str(tmp_path / "x" / ".." / "a")])
        )
    with pytest.raises(InputError, match="one seed per command"):
        per_seed_args(
            p.parse_args(
                [*base, "--seed", "0", "1", "--out", str(tmp_path / "a"), str(tmp_path / "b"), "--devices", "2"]
            )
        )
    assert len(per_seed_args(p.parse_args([*base, "--seed", "0", "--out", str(tmp_path / "a"), "--devices", "2"]))) == 1


def test_version_names_the_package_version(capsys):
    from importlib import metadata

    assert run_cli("prog", "d", STAGES, ["--version"]) == 0
    assert capsys.readouterr().out.startswith(f"prog {metadata.version('segpretrain')}")


def test_license_and_citation_files():
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    assert (root / "LICENSE").read_text().startswith("MIT License")
    assert 'license = { text = "MIT" }' in (root / "pyproject.toml").read_text()
    cff = yaml.safe_load((root / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    titles = " ".join(ref["title"] for ref in cff["references"])
    assert "global and local features for medical image segmentation" in titles
    assert "Hyper-pixel-wise Contrastive Learning" in titles
