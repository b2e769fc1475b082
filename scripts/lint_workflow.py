"""``snakemake --lint`` for this workflow (``make lint``, tests/test_workflow.py).

Every lint fails the check except one that the workflow does not follow on purpose, "Specify
a conda environment or container for each rule": the rules call the stage CLIs of the
project's own environment (``.venv``, which ``make`` installs from pyproject.toml), and there
is no conda file to name (README "Software environment" says why). Snakemake's ``--lint json``
is not passed through by its CLI (9.x), so the text output is read.

Usage: ``python scripts/lint_workflow.py [snakemake options, e.g. --snakefile FILE]``. Exit 0
when clean; 1 with the other lints, or Snakemake's own error, printed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ACCEPTED = {"Specify a conda environment or container for each rule."}


def parse_lints(text: str) -> list[tuple[str, str]]:
    """(where, title) of every lint in the text output of ``snakemake --lint``: blocks headed
    ``Lints for rule NAME (line N, FILE):`` or ``Lints for snakefile FILE:``, one ``    * TITLE:``
    line per lint."""
    found, where = [], None
    for line in text.splitlines():
        head = re.match(r"^Lints for (.+):$", line)
        if head:
            where = head.group(1)
            continue
        item = re.match(r"^    \* (.+):$", line)
        if item and where is not None:
            found.append((where, item.group(1)))
    return found


def main(argv: list[str]) -> int:
    beside = Path(sys.executable).parent / "snakemake"
    snakemake = str(beside) if beside.is_file() else shutil.which("snakemake") or "snakemake"
    proc = subprocess.run([snakemake, "--lint", *argv], capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    if proc.returncode == 0:
        print("snakemake --lint: no lints")
        return 0
    found = parse_lints(text)
    if not found:  # Snakemake failed before linting (a syntax or config error)
        print(text, file=sys.stderr)
        return proc.returncode or 1
    other = [(where, title) for where, title in found if title not in ACCEPTED]
    for where, title in other:
        print(f"{where}: {title}", file=sys.stderr)
    if other:
        print(f"snakemake --lint: {len(other)} lints (run `snakemake --lint` for the details)", file=sys.stderr)
        return 1
    print(f"snakemake --lint: clean apart from {len(found)} × {sorted(ACCEPTED)} (see scripts/lint_workflow.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
