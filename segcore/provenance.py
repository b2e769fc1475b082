"""What made an output: the running stage and its provenance record (``provenance.json``).

Every output folder a stage writes gets ``provenance.json`` (stage, package version, git commit
when run from a checkout, the exact command line, host, start and end time, library versions);
its ``stage`` entry is also how a later run recognises its own earlier output
(:mod:`segcore.output_guard`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

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


def set_current_run(run: StageRun | None) -> StageRun | None:
    """Make ``run`` the running stage (None: none); returns the previous one."""
    global _RUN
    previous, _RUN = _RUN, run
    return previous


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def current_run() -> StageRun | None:
    return _RUN


@cache
def git_commit() -> str | None:
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
        "git_commit": git_commit(),
        "command": run.command if run else list(sys.argv),
        "cwd": os.getcwd(),
        "host": socket.gethostname(),
        "started": run.started if run else None,
        "finished": _now(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
    }
