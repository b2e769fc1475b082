"""The report stage: its options and the run that writes the report folder.

``segpretrain report`` (also ``medseg report`` and ``rs report``: the same stage) writes one
folder, atomically: ``index.html`` (tables, plots embedded as PNG, every number; no external
resources), ``tables.md``, ``tables.html``, ``metrics_tidy.csv`` / ``.parquet``,
``seed_stats.csv``, ``paired_stats.csv``, ``resources.csv`` (time and memory per workflow
rule), per domain ``<domain>_summary.csv``, ``_per_class.csv``, ``_gains.csv``,
``_semi_gains.csv`` (semi-supervised runs against the same init without the mode),
``_pretrain.csv`` (pretext loss against chance), and
``plots/<domain>_{budget,overlays,finetune_curves,selection,pretrain_curves}.{png,svg}`` (fixed
names a workflow can declare; a table or figure without data says so), plus ``config.yaml``.
What each shows: docs/report.md.
"""

from __future__ import annotations

import html
import logging

import pandas as pd

from segcore.config import to_record
from segcore.outputs import atomic_dir, write_yaml
from segcore.report.config import ReportConfig
from segcore.report.domains import DOMAIN_TITLE
from segcore.report.figures import domain_figures
from segcore.report.logs import describe_log, expand_paths
from segcore.report.overlays import find_overlays
from segcore.report.page import page_html, tidy_html
from segcore.report.pretext import pretext_table, read_pretrain_record
from segcore.report.resources import resource_summary, resources_table
from segcore.report.statistics import paired_comparison, seed_summary
from segcore.report.tables import build_domain_tables, combined_frame
from segcore.report.tidy import read_runs

log = logging.getLogger(__name__)


def run_report(args: ReportConfig) -> None:
    runs, tidy = read_runs(list(args.input))
    stats = seed_summary(tidy)
    domains = list(dict.fromkeys([*(args.domains or []), *(r.domain for r in runs)]))
    logs = [describe_log(p) for p in expand_paths(args.logs or [])]
    overlays = find_overlays(runs, args.overlays) if args.plots else {}
    pretext = [read_pretrain_record(p) for p in expand_paths(args.pretrain or [], "pretraining train.json")]
    resources = resource_summary(expand_paths(args.benchmarks or [], "benchmark file"))
    md = [f"# {args.title}", "", f"{len(runs)} evaluated runs; mean ± sd over seeds (sample SD), n = seeds.", ""]
    html_tables: list[str] = []
    sections: list[tuple[str, str, str]] = []
    with atomic_dir(args.out) as tmp:
        tidy.to_csv(tmp / "metrics_tidy.csv", index=False)
        tidy.to_parquet(tmp / "metrics_tidy.parquet", index=False)
        stats.to_csv(tmp / "seed_stats.csv", index=False)
        all_pairs = []
        for domain in domains:
            tables = build_domain_tables(tidy, stats, domain, args.baseline)
            all_pairs.append(tables.pairs)
            combined_frame([(h.label, t) for h, t in tables.headline]).to_csv(
                tmp / f"{domain}_summary.csv", index=False
            )
            combined_frame(list(tables.per_class)).to_csv(tmp / f"{domain}_per_class.csv", index=False)
            combined_frame([(h.label, t) for h, t in tables.gains]).to_csv(tmp / f"{domain}_gains.csv", index=False)
            combined_frame([(h.label, t) for h, t in tables.semi_gains]).to_csv(
                tmp / f"{domain}_semi_gains.csv", index=False
            )
            if tables.semi_pairs is not None:
                all_pairs.append(tables.semi_pairs)
            pretrain = pretext_table(pretext, domain, args.collapse_fraction, args.collapse_window)
            pretrain.to_frame().to_csv(tmp / f"{domain}_pretrain.csv", index=False)
            semi_gains = [t for _, t in tables.semi_gains if not t.empty]  # only where semi-supervised runs are
            ordered = (
                [t for _, t in tables.headline]
                + [t for _, t in tables.gains]
                + semi_gains
                + [t for _, t in tables.per_class]
                + [pretrain]
            )
            title = DOMAIN_TITLE.get(domain, domain)
            md += [f"## {title}", "", *[t.to_markdown() for t in ordered]]
            html_tables += [f"<h2>{html.escape(title)}</h2>", *[t.to_html() for t in ordered]]
            inner = [t.to_html() for _, t in tables.headline]
            if args.plots:
                inner += domain_figures(tmp, domain, stats, runs, overlays, logs, args)
            inner += (
                [t.to_html() for _, t in tables.gains]
                + [t.to_html() for t in semi_gains]
                + [t.to_html() for _, t in tables.per_class]
                + [pretrain.to_html()]
            )
            sections.append((domain, title, "\n".join(inner)))
        resources.to_csv(tmp / "resources.csv", index=False)
        if not resources.empty:
            compute = resources_table(resources)
            md += ["## Compute", "", compute.to_markdown()]
            html_tables += ["<h2>Compute</h2>", compute.to_html()]
            sections.append(("compute", "Compute", compute.to_html()))
        pairs = (
            pd.concat(all_pairs, ignore_index=True)
            if all_pairs
            else paired_comparison(tidy.iloc[:0], "", "", args.baseline)
        )
        pairs.to_csv(tmp / "paired_stats.csv", index=False)
        (tmp / "tables.md").write_text("\n".join(md))
        (tmp / "tables.html").write_text(
            page_html(args.title, "Tables only.", [("tables", "Tables", "\n".join(html_tables))], "")
        )
        intro = (
            f"{len(runs)} evaluated runs from {len(args.input)} metrics files. Cells are mean ± sample SD over seeds "
            f"(n = seeds); gains are paired by seed against '{args.baseline}'. Tables as CSV beside this page."
        )
        (tmp / "index.html").write_text(page_html(args.title, intro, sections, tidy_html(tidy, args.html_max_rows)))
        write_yaml(tmp / "config.yaml", to_record(args))
        # a report is for reading: the temporary folder is private (0700) until renamed
        tmp.chmod(0o755)
    log.info("report of %d runs (%d numbers) in %s", len(runs), len(tidy), args.out)
