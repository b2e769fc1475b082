"""Running a stage CLI from a benchmark: one thread, its output into a log file, the seconds it
took printed, a failure raised with the command and the log to read."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path


def run_logged(cmd: list[str], log: Path, label: str) -> float:
    """Run ``cmd`` with ``OMP_NUM_THREADS=1``, stdout and stderr into ``log``; print the seconds
    and ``label``; RuntimeError naming the command and the log when it fails. Returns seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with log.open("w") as f:
        res = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if res.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({res.returncode}); see {log}")
    seconds = time.perf_counter() - t0
    print(f"  {seconds:6.0f}s  {label}: {log}", flush=True)
    return seconds
