"""``--out`` never deletes or changes what a stage did not write, for every stage of both CLIs.

The checks run before the stage does any work, so the inputs here only need to exist.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medseg.cli import main as medseg_main
from rs.cli import main as rs_main
from segcore.output_guard import lock_path
from segcore.provenance import PROVENANCE_FILE


def _inputs(tmp: Path) -> dict[str, Path]:
    data = tmp / "prepared"
    data.mkdir()
    (data / "manifest.json").write_text("{}")
    files = {name: tmp / name for name in ("model.pt", "scan.nii.gz", "scene.tif", "dem.tif", "metrics.json")}
    for path in files.values():
        path.write_bytes(b"x")
    raw = tmp / "raw"
    raw.mkdir()
    (raw / "scan.nii.gz").write_bytes(b"x")
    return {"data": data, "raw": raw, **files}


# (cli, stage, arguments besides --out, the input an --out must never equal or contain)
def _stages(i: dict[str, Path]) -> list[tuple[str, str, list[str], Path | None]]:
    return [
        ("medseg", "demo-data", [], None),
        ("medseg", "preprocess", ["--input", str(i["raw"])], i["raw"]),
        ("medseg", "pretrain", ["--data", str(i["data"])], i["data"]),
        ("medseg", "finetune", ["--data", str(i["data"])], i["data"]),
        ("medseg", "evaluate", ["--data", str(i["data"]), "--model", str(i["model.pt"])], i["data"]),
        (
            "medseg",
            "predict",
            ["--input", str(i["raw"]), "--model", str(i["model.pt"]), "--data", str(i["data"])],
            i["raw"],
        ),
        ("medseg", "report", ["--input", str(i["metrics.json"])], None),
        ("rs", "demo-data", [], None),
        ("rs", "preprocess", ["--input", str(i["raw"])], i["raw"]),
        ("rs", "pretrain", ["--data", str(i["data"])], i["data"]),
        ("rs", "finetune", ["--data", str(i["data"])], i["data"]),
        ("rs", "evaluate", ["--data", str(i["data"]), "--model", str(i["model.pt"])], i["data"]),
        (
            "rs",
            "predict",
            [
                "--image",
                str(i["scene.tif"]),
                "--dem",
                str(i["dem.tif"]),
                "--model",
                str(i["model.pt"]),
                "--data",
                str(i["data"]),
            ],
            None,
        ),
        ("rs", "report", ["--input", str(i["metrics.json"])], None),
    ]


STAGE_IDS = [
    f"{c}-{s}"
    for c, s, _, _ in _stages(
        {k: Path(k) for k in ("data", "raw", "model.pt", "scan.nii.gz", "scene.tif", "dem.tif", "metrics.json")}
    )
]


def _call(cli: str, argv: list[str]) -> int:
    return (medseg_main if cli == "medseg" else rs_main)(argv)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return _inputs(tmp_path)


@pytest.mark.parametrize("index", range(14), ids=STAGE_IDS)
def test_a_users_folder_is_refused_and_left_alone(index, inputs, tmp_path, capsys):
    cli, stage, args, _ = _stages(inputs)[index]
    user = tmp_path / "thesis"
    user.mkdir()
    (user / "chapter1.tex").write_text("years of work")
    before = _snapshot(tmp_path)
    assert _call(cli, [stage, *args, "--out", str(user)]) == 2
    err = capsys.readouterr().err
    assert f"error: {user}: is a non-empty folder that `{cli} {stage}` did not write" in err
    assert "--overwrite" in err and "Traceback" not in err
    assert _snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["thesis", "prepared", "raw", "model.pt", "scan.nii.gz", "scene.tif", "dem.tif", "metrics.json"]
    )


@pytest.mark.parametrize("index", range(14), ids=STAGE_IDS)
def test_out_at_the_current_folder_or_a_file_is_an_error(index, inputs, tmp_path, capsys):
    cli, stage, args, _ = _stages(inputs)[index]
    before = _snapshot(tmp_path)
    for out in (".", str(tmp_path), str(tmp_path.parent), "sub/.."):
        assert _call(cli, [stage, *args, "--out", out, "--overwrite"]) == 2
        assert "not the current folder or one above it" in capsys.readouterr().err
    assert _call(cli, [stage, *args, "--out", str(inputs["scan.nii.gz"]), "--overwrite"]) == 2
    assert "is an existing file; --out names a folder" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "index",
    [
        i
        for i, (_, _, _, src) in enumerate(
            _stages(
                {k: Path(k) for k in ("data", "raw", "model.pt", "scan.nii.gz", "scene.tif", "dem.tif", "metrics.json")}
            )
        )
        if src is not None
    ],
)
def test_out_equal_to_inside_or_containing_an_input_is_always_refused(index, inputs, tmp_path, capsys):
    cli, stage, args, src = _stages(inputs)[index]
    before = _snapshot(tmp_path)
    for out, relation in ((src, "is"), (src / "sub", "is inside"), (tmp_path / "sub/..", "is")):
        if out == tmp_path / "sub/..":
            continue  # the current folder: its own error (test above)
        assert _call(cli, [stage, *args, "--out", str(out), "--overwrite"]) == 2
        assert f"--out {relation} the input {src}" in capsys.readouterr().err
    # a folder that holds an input (the model file, the raw scan) is refused too
    holder = tmp_path / "holder"
    holder.mkdir()
    moved = holder / src.name
    args = [str(moved) if a == str(src) else a for a in args]
    src.rename(moved)
    assert _call(cli, [stage, *args, "--out", str(holder), "--overwrite"]) == 2
    assert f"--out contains the input {moved}" in capsys.readouterr().err
    moved.rename(src)
    holder.rmdir()
    assert _snapshot(tmp_path) == before


def test_evaluate_out_beside_the_model_in_its_folder_is_refused(inputs, tmp_path, capsys):
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    (model_dir / "model.pt").write_bytes(b"weights")
    for cli in ("medseg", "rs"):
        argv = [
            "evaluate",
            "--data",
            str(inputs["data"]),
            "--model",
            str(model_dir / "model.pt"),
            "--out",
            str(model_dir),
        ]
        assert _call(cli, argv + ["--overwrite"]) == 2
        assert f"--out contains the input {model_dir / 'model.pt'}" in capsys.readouterr().err
    assert (model_dir / "model.pt").read_bytes() == b"weights"


def test_a_second_run_on_the_same_out_fails_at_once(inputs, tmp_path, capsys):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = lock_path(tmp_path / "ft")
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename}))
        assert _call("medseg", ["finetune", "--data", str(inputs["data"]), "--out", str(tmp_path / "ft")]) == 2
        err = capsys.readouterr().err
        assert f"is being written by process {sleeper.pid}" in err and str(lock) in err
        assert lock.is_file() and not (tmp_path / "ft").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "phantoms"
    lock_path(out).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    argv = ["demo-data", "--out", str(out), "--n-subjects", "2", "--n-slices", "4", "--size", "32"]
    assert medseg_main(argv) == 0
    assert (out / PROVENANCE_FILE).is_file() and not lock_path(out).exists()


def test_own_earlier_output_is_replaced_and_overwrite_replaces_a_foreign_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "phantoms"
    argv = ["demo-data", "--out", str(out), "--n-subjects", "2", "--n-slices", "4", "--size", "32"]
    assert medseg_main(argv) == 0
    prov = json.loads((out / PROVENANCE_FILE).read_text())
    assert prov["stage"] == "medseg demo-data" and prov["command"] == ["medseg", *argv]
    assert {"version", "git_commit", "host", "started", "finished", "packages", "python"} <= set(prov)
    assert {"torch", "nibabel", "monai"} <= set(prov["packages"])
    (out / "stale.txt").write_text("left by the earlier run")
    assert medseg_main(argv + ["--seed", "1"]) == 0  # its own output: replaced without --overwrite
    assert not (out / "stale.txt").exists()
    # another stage's output is not its own
    assert rs_main(["demo-data", "--out", str(out), "--n-scenes", "1", "--size", "64"]) == 2
    assert "did not write" in capsys.readouterr().err
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("x")
    assert (
        medseg_main(
            ["demo-data", "--out", str(foreign), "--n-subjects", "2", "--n-slices", "4", "--size", "32", "--overwrite"]
        )
        == 0
    )
    assert not (foreign / "notes.txt").exists() and (foreign / PROVENANCE_FILE).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "phantoms"]


def test_output_of_a_version_without_provenance_is_recognised_by_its_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "phantoms"
    argv = ["demo-data", "--out", str(out), "--n-subjects", "2", "--n-slices", "4", "--size", "32"]
    assert medseg_main(argv) == 0
    (out / PROVENANCE_FILE).unlink()
    assert medseg_main(argv) == 0
    (out / PROVENANCE_FILE).unlink()
    (out / "config.yaml").write_text("something: else\n")
    assert medseg_main(argv) == 2


def test_sigterm_removes_temporary_folders_and_the_lock(tmp_path):
    out = tmp_path / "phantoms"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "medseg.cli",
            "demo-data",
            "--out",
            str(out),
            "--n-subjects",
            "60",
            "--size",
            "160",
            "--n-slices",
            "16",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".phantoms.tmp-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the stage ended before it could be stopped"
    assert lock_path(out).is_file()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_tree_of_empty_folders_is_no_users_data(tmp_path, monkeypatch):
    """Snakemake creates the folders of a job's declared output files (report/plots/) first."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "phantoms"
    (out / "plots" / "deeper").mkdir(parents=True)
    assert medseg_main(["demo-data", "--out", str(out), "--n-subjects", "2", "--n-slices", "4", "--size", "32"]) == 0
    assert (out / PROVENANCE_FILE).is_file() and not (out / "plots").exists()
    (tmp_path / "mine" / "sub").mkdir(parents=True)
    (tmp_path / "mine" / "sub" / "notes.txt").write_text("x")  # one file deep down is the user's
    assert (
        medseg_main(
            ["demo-data", "--out", str(tmp_path / "mine"), "--n-subjects", "2", "--n-slices", "4", "--size", "32"]
        )
        == 2
    )
    assert (tmp_path / "mine" / "sub" / "notes.txt").read_text() == "x"
