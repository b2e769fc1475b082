"""Where a stage may write: ``--out`` checks and one run per output.

* :func:`claim_outputs` (entered by the CLI for the whole run) checks every ``--out`` before any
  work: never the current folder or one above it, never an existing file, never equal to,
  inside or containing an input, and never a folder holding files that is not this stage's own
  earlier output unless ``--overwrite`` is given. It holds a lock file
  ``<parent>/.<name>.lock`` per output, so a second run with the same ``--out`` fails at once
  (the lock of a dead process on this host is taken over).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import yaml

from segcore.errors import InputError
from segcore.provenance import PROVENANCE_FILE, StageRun, _now, set_current_run


def is_own_output(folder: Path, run: StageRun) -> bool:
    """``folder`` was written by this stage before: its provenance names the stage, or (outputs
    of versions without provenance) its ``config.yaml`` holds exactly this stage's options."""
    prov = folder / PROVENANCE_FILE
    if prov.is_file():
        try:
            return json.loads(prov.read_text()).get("stage") == run.stage
        except (OSError, ValueError, AttributeError):
            return False
    cfg = folder / "config.yaml"
    if run.arg_keys and cfg.is_file():
        try:
            data = yaml.safe_load(cfg.read_text())
        except (OSError, yaml.YAMLError):
            return False
        return isinstance(data, dict) and set(map(str, data)) == set(run.arg_keys)
    return False


def holds_files(folder: Path) -> bool:
    """True when ``folder`` or any folder below it holds a file (or link). A tree of empty
    folders holds nothing of anybody's: Snakemake creates the folders of a job's declared output
    files before the job runs."""
    return any(not p.is_dir() or p.is_symlink() for p in folder.rglob("*"))


def _relation(out: Path, other: Path) -> str | None:
    if out == other:
        return "is"
    if out in other.parents:
        return "contains"
    if other in out.parents:
        return "is inside"
    return None


def check_out(out: str | Path, inputs: Sequence[str | Path], run: StageRun) -> None:
    """Raise :class:`InputError` unless the stage may write the folder ``out`` (module docstring)."""
    raw = Path(out)
    target = raw.resolve()
    cwd = Path.cwd().resolve()
    if raw.name in ("", ".", "..") or target == cwd or target in cwd.parents:
        raise InputError(out, "--out must name a new or earlier output folder, not the current folder or one above it")
    if target.exists() and not target.is_dir():
        raise InputError(out, "is an existing file; --out names a folder")
    for item in inputs:
        src = Path(item).resolve()
        relation = _relation(target, src)
        if relation:
            raise InputError(
                out, f"--out {relation} the input {item}; write the output to a folder apart from the inputs"
            )
    if target.is_dir() and holds_files(target) and not run.overwrite and not is_own_output(target, run):
        raise InputError(
            out,
            f"is a non-empty folder that `{run.stage}` did not write; choose a new folder, or pass "
            "--overwrite to replace it",
        )


def lock_path(out: str | Path) -> Path:
    """``<parent>/.<name>.lock``: held while a stage writes ``out`` (beside it, like the resume folder)."""
    out = Path(out)
    return out.parent / f".{out.name}.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _create_lock(path: Path, record: dict[str, Any]) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh)
    return True


@contextmanager
def output_lock(out: str | Path) -> Iterator[Path]:
    """Hold the lock of ``out`` for the duration; a second holder fails at once with an error
    naming the running process. A lock left by a dead process of this host is taken over."""
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now(), "command": list(sys.argv)}
    if not _create_lock(path, record):
        try:
            held = json.loads(path.read_text())
        except (OSError, ValueError):
            held = {}
        pid, host = held.get("pid"), held.get("host")
        stale = host == record["host"] and isinstance(pid, int) and not _pid_alive(pid)
        if stale:
            path.unlink(missing_ok=True)
        if not (stale and _create_lock(path, record)):
            who = f"process {pid} on {host}" if pid else "another run"
            raise InputError(
                out,
                f"is being written by {who} (lock {path}); wait for it to finish, "
                "or delete the lock file if that run is gone",
            )
    try:
        yield path
    finally:
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass


def _is_secondary_process() -> bool:
    """A DDP process other than global rank 0 (started by Lightning or srun): rank 0 alone
    checks, locks and writes the outputs."""
    for var in ("LOCAL_RANK", "RANK", "NODE_RANK"):
        if os.environ.get(var, "0") not in ("", "0"):
            return True
    return int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and os.environ.get("SLURM_PROCID", "0") != "0"


@contextmanager
def claim_outputs(run: StageRun, outs: Sequence[str | Path], inputs: Sequence[str | Path]) -> Iterator[None]:
    """Check and lock every output folder of a stage run, and make ``run`` the one that
    :func:`atomic_dir` records; everything is released when the run ends, however it ends."""
    resolved = [Path(o).resolve() for o in outs]
    if len(set(resolved)) != len(resolved):
        raise InputError(None, f"--out names the same folder twice: {[str(o) for o in outs]}")
    for i, a in enumerate(resolved):
        for b in resolved[i + 1 :]:
            if a in b.parents or b in a.parents:
                raise InputError(outs[i], f"--out folders must not contain each other ({a} and {b})")
    secondary = _is_secondary_process()
    with ExitStack() as stack:
        if not secondary:
            for out in outs:
                check_out(out, inputs, run)
            for out in outs:
                stack.enter_context(output_lock(out))
        previous = set_current_run(run)
        try:
            yield
        finally:
            set_current_run(previous)
