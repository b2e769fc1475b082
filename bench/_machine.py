"""One line describing the machine a benchmark ran on, printed by every script in ``bench/``.

Ratios measured side by side in one run survive a slower machine; absolute seconds do not, and
neither survives a machine shared with other work. So the line names the CPU, the cores this
process may use, RAM, torch and its thread count, and the load average at the time.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity: a container's or SLURM job's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def ram_gib() -> float:
    """Total RAM in GiB (``MemTotal`` of ``/proc/meminfo``); NaN where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20  # kB -> GiB
    except OSError:
        pass
    return float("nan")


def load_average() -> str:
    """``os.getloadavg()`` over 1, 5 and 15 minutes: above the core count, timings are inflated."""
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def utc_now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def machine_description(threads: int | None = None) -> str:
    """``CPU model, N cores, R GiB RAM, torch V (T threads), load 1/5/15 min, date``.

    ``threads``: the intra-op thread count the benchmark runs with (default: torch's current).
    """
    import torch  # late: the description is also wanted by scripts that only time subprocesses

    threads = torch.get_num_threads() if threads is None else threads
    return (
        f"{cpu_model()}, {usable_cores()} cores, {ram_gib():.1f} GiB RAM, "
        f"Python {platform.python_version()}, torch {torch.__version__} ({threads} thread(s)), "
        f"load average {load_average()} (1/5/15 min), {utc_now()}"
    )


if __name__ == "__main__":
    print(machine_description())
