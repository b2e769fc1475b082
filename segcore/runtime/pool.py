"""Worker processes of the preprocess stages (``--workers``): a function mapped over independent
jobs (volumes, scenes), results in job order, so that the output does not depend on the number
of workers.

Processes are forked (Linux; spawned elsewhere): a worker starts in milliseconds with the
stage's modules already imported. An :class:`~segcore.errors.InputError` raised in a worker
reaches the main process as itself (it pickles with its file and problem).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

J = TypeVar("J")
R = TypeVar("R")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity: a container's or SLURM job's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parse_workers(text: str | int) -> int:
    """``--workers`` of a preprocess stage: a count >= 1, or ``auto`` (the usable cores)."""
    if str(text) == "auto":
        return usable_cores()
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a count >= 1 or 'auto', got {text!r}") from err
    if value < 1:
        raise argparse.ArgumentTypeError(f"worker count must be >= 1, got {value}")
    return value


def ordered_map(
    fn: Callable[[J], R],
    jobs: Iterable[J],
    workers: int,
    chunksize: int = 1,
    context: tuple[dict[str, Any], Any] | None = None,
) -> Iterator[R]:
    """``fn(job)`` for every job, in job order: in this process with ``workers`` <= 1, else in
    ``workers`` worker processes (``chunksize`` jobs per hand-over: more for many small jobs).

    ``context`` = (a module-level dict, a value): the value is put under ``"context"`` in the
    dict for the duration, where ``fn`` finds it. Forked workers inherit it instead of
    receiving it by pickle (objects such as closures that load a scene do not pickle); where
    processes cannot be forked, the jobs run in this process."""
    holder = context[0] if context is not None else {}
    if context is not None:
        holder["context"] = context[1]
    forking = "fork" in multiprocessing.get_all_start_methods()
    try:
        if workers <= 1 or (context is not None and not forking):
            yield from map(fn, jobs)
            return
        method = "fork" if forking else "spawn"
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))
        try:
            yield from pool.map(fn, jobs, chunksize=max(1, chunksize))
        except BaseException:
            # a failed job (bad input), SIGTERM or Ctrl-C: the jobs not started yet are not run
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True)
    finally:
        holder.pop("context", None)
