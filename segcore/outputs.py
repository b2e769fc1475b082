"""Atomic stage outputs: write under a temporary name, rename when complete.

A stage that fails, or is stopped by SIGTERM/SIGINT, leaves nothing that looks complete: the
temporary file or folder is removed and the final path is never created. An existing output is
replaced only when :mod:`segcore.output_guard` allows it; with a stage running, the folder gets
its ``provenance.json`` (:mod:`segcore.provenance`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from segcore.errors import InputError
from segcore.output_guard import holds_files, is_own_output
from segcore.provenance import PROVENANCE_FILE, current_run, provenance


@contextmanager
def atomic_dir(final: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``final``; rename it to ``final`` on success.

    An existing ``final`` is replaced only after the new one is complete, and only when it is
    empty, this stage's own earlier output, or ``overwrite`` (or the running stage's
    ``--overwrite``) allows it. With a stage run active, ``provenance.json`` is written into the
    folder. The temporary folder is removed on any failure, SIGTERM and Ctrl-C included.
    """
    final = Path(final)
    run = current_run()
    allowed = overwrite or (run is not None and run.overwrite)

    def may_replace() -> bool:
        if not final.exists():
            return True
        if not final.is_dir():
            return False
        return allowed or not holds_files(final) or (run is not None and is_own_output(final, run))

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
