"""Time and memory per workflow rule, from the TSV files of Snakemake's ``benchmark:`` directive.

A benchmark file holds a header and one row per repeat of one job: ``s`` (wall seconds),
``h:m:s``, ``max_rss`` (peak resident memory of the job's processes, MiB), ``max_vms``, ...,
``cpu_time``; a value not measured (a job shorter than the first sample) is ``NA`` or ``-``.
The rule is the folder below a ``benchmarks`` folder (``<results>/benchmarks/<rule>/<job>.tsv``,
the workflow's layout); without one, the TSV's own folder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from segcore.errors import InputError
from segcore.report.tables import TextTable

RESOURCE_COLUMNS = ["rule", "jobs", "total_s", "max_s", "max_rss_mib"]


def benchmark_rule(path: Path) -> str:
    """The rule a benchmark file belongs to (see the module docstring)."""
    parts = path.parts[:-1]
    at = max((i for i, p in enumerate(parts) if p == "benchmarks"), default=-1)
    if 0 <= at < len(parts) - 1:
        return parts[at + 1]
    return path.parent.name if at < 0 else path.stem


def read_benchmark(path: str | Path) -> pd.DataFrame:
    """One benchmark TSV: its ``s`` and ``max_rss`` columns as floats (NaN where not measured)."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, sep="\t", na_values=["NA", "-"])
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise InputError(path, f"not a readable Snakemake benchmark TSV ({err})") from err
    missing = [c for c in ("s", "max_rss") if c not in frame.columns]
    if missing or frame.empty:
        raise InputError(
            path, f"a Snakemake benchmark TSV needs a row and the columns s and max_rss (lacks {missing or 'rows'})"
        )
    try:
        return frame[["s", "max_rss"]].astype(float)
    except ValueError as err:
        raise InputError(path, f"s or max_rss holds something that is not a number ({err})") from err


def resource_summary(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Per rule (most total time first): ``jobs`` (files), ``total_s`` (sum over jobs of the mean
    wall time over repeats), ``max_s`` (the longest run), ``max_rss_mib`` (the largest peak
    memory; NaN when never measured)."""
    rows: dict[str, dict[str, float]] = {}
    for path in paths:
        frame = read_benchmark(path)
        rule = benchmark_rule(Path(path))
        row = rows.setdefault(rule, {"jobs": 0, "total_s": 0.0, "max_s": -math.inf, "max_rss_mib": math.nan})
        row["jobs"] += 1
        row["total_s"] += float(frame["s"].mean())
        row["max_s"] = max(row["max_s"], float(frame["s"].max()))
        rss = frame["max_rss"].max()
        if math.isfinite(rss):
            row["max_rss_mib"] = rss if math.isnan(row["max_rss_mib"]) else max(row["max_rss_mib"], rss)
    out = pd.DataFrame([{"rule": rule, **row} for rule, row in rows.items()], columns=RESOURCE_COLUMNS)
    out["jobs"] = out["jobs"].astype(int)
    return out.sort_values(["total_s", "rule"], ascending=[False, True], ignore_index=True)


def resources_table(summary: pd.DataFrame) -> TextTable:
    """The summary as a text table, one row per rule."""
    table = TextTable(
        title="Compute: time and memory per rule (Snakemake benchmarks)",
        index_names=["rule"],
        columns=["jobs", "total s", "max s", "max RSS (MiB)"],
        note=(
            "Wall time of every job of the rule (total and the longest) and the largest peak resident memory "
            "of a job's "
            "processes, as Snakemake's benchmark directive measured them (– when a job ended before the first sample)."
        ),
    )
    for r in summary.to_dict("records"):
        rss = "–" if not math.isfinite(r["max_rss_mib"]) else f"{r['max_rss_mib']:.0f}"
        table.rows.append(((r["rule"],), [str(r["jobs"]), f"{r['total_s']:.1f}", f"{r['max_s']:.1f}", rss]))
    return table
