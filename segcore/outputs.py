"""Stage outputs: where a stage may write, atomically, and what it records about itself.

* :func:`claim_outputs` (entered by the CLI for the whole run) checks every ``--out`` before any
  work: never the current folder or one above it, never an existing file, never equal to,
  inside or containing an input, and never a non-empty folder that is not this stage's own
  earlier output unless ``--overwrite`` is given. It holds a lock file
  ``<parent>/.<name>.lock`` per output, so a second run with the same ``--out`` fails at once
  (the lock of a dead process on this host is taken over).
* :func:`atomic_dir` writes under a temporary name and renames when complete: a stage that
  fails, or is stopped by SIGTERM/SIGINT, leaves nothing that looks complete. Each output
  folder gets ``provenance.json`` (stage, version, git commit, command line, host, start and end
  time, library versions); its ``stage`` entry is how a later run recognises its own output.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from segcore.errors import InputError

PROVENANCE_FILE = "provenance.json"
# the libraries whose versions decide what a stage computes
RECORDED_PACKAGES = (
    "segpretrain",
    "torch",
    "torchvision",
    "lightning",
    "monai",
    "segmentation-models-pytorch",
    "timm",
    "numpy",
    "scikit-image",
    "nibabel",
    "rasterio",
    "h5py",
)


@dataclass
class StageRun:
    """The stage that is running: what :func:`atomic_dir` records and may replace."""

    stage: str
    overwrite: bool = False
    arg_keys: frozenset[str] = frozenset()
    command: list[str] = field(default_factory=lambda: list(sys.argv))
    started: str = field(default_factory=lambda: _now())


_RUN: StageRun | None = None


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def current_run() -> StageRun | None:
    return _RUN


# --------------------------------------------------------------------------- provenance


@cache
def _git_commit() -> str | None:
    """The commit of the checkout this package runs from (``+dirty`` with local changes), or None."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


@cache
def package_versions() -> dict[str, str]:
    out = {}
    for name in RECORDED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def provenance(run: StageRun | None) -> dict[str, Any]:
    """What made an output: stage, versions, commit, command line, host, start and end time."""
    return {
        "stage": run.stage if run else None,
        "version": package_versions().get("segpretrain"),
        "git_commit": _git_commit(),
        "command": run.command if run else list(sys.argv),
        "cwd": os.getcwd(),
        "host": socket.gethostname(),
        "started": run.started if run else None,
        "finished": _now(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
    }


# --------------------------------------------------------------------------- where a stage may write


def _is_own_output(folder: Path, run: StageRun) -> bool:
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
    if target.is_dir() and holds_files(target) and not run.overwrite and not _is_own_output(target, run):
        raise InputError(
            out,
            f"is a non-empty folder that `{run.stage}` did not write; choose a new folder, or pass "
            "--overwrite to replace it",
        )


# --------------------------------------------------------------------------- one run per output


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
    global _RUN
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
        previous, _RUN = _RUN, run
        try:
            yield
        finally:
            _RUN = previous


# --------------------------------------------------------------------------- atomic writing


@contextmanager
def atomic_dir(final: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``final``; rename it to ``final`` on success.

    An existing ``final`` is replaced only after the new one is complete, and only when it is
    empty, this stage's own earlier output, or ``overwrite`` (or the running stage's
    ``--overwrite``) allows it. With a stage run active, ``provenance.json`` is written into the
    folder. The temporary folder is removed on any failure, SIGTERM and Ctrl-C included.
    """
    final = Path(final)
    run = _RUN
    allowed = overwrite or (run is not None and run.overwrite)

    def may_replace() -> bool:
        if not final.exists():
            return True
        if not final.is_dir():
            return False
        return allowed or not holds_files(final) or (run is not None and _is_own_output(final, run))

    if not may_replace():
        raise InputError(final, "exists and was not written by this stage; choose a new folder, or pass --overwrite")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        if run is not None:
            (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance(run), indent=2) + "\n")
        tmp.chmod(0o755)  # mkdtemp makes it private; outputs are ordinary folders
        if not may_replace():  # something else appeared there while this stage ran
            raise InputError(final, "appeared while this stage ran and was not written by it; nothing was replaced")
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final`` (same suffix); ``os.replace`` it on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.stem}.tmp-", suffix="".join(final.suffixes), dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if tmp.exists():
        tmp.chmod(0o644)  # mkstemp makes it private
    os.replace(tmp, final)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    return obj


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n")


def write_yaml(path: str | Path, data: Any) -> None:
    """Write ``data`` as YAML (the resolved arguments of a stage), atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(yaml.safe_dump(_jsonable(data), sort_keys=False))


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())
