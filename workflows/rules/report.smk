# The results report: tables, plots and one HTML page over every evaluated cell.
# Every table and plot is registered with a one-sentence caption (workflows/report/*.rst)
# for `snakemake --report report.html`.
from snakemake.io import report as registered

REPORT_TABLES = ["summary", "per_class", "gains", "semi_gains", "pretrain"]
REPORT_PLOTS = ["budget", "overlays", "finetune_curves", "selection", "pretrain_curves"]
REPORT_DOMAIN_TITLES = {"mri": "MRI", "rs": "Remote sensing"}
# the domains this experiment evaluates: the same switches as all_metrics_files()
REPORT_DOMAINS = [
    domain
    for domain, enabled in (
        ("mri", mri_cfg().get("enabled", True)),
        ("rs", config.get("rs", {}).get("enabled", False)),
    )
    if enabled
]
# Lightning logs of every training stage (the report keeps the curves of evaluated runs) and
# the benchmark files of every job, as glob patterns the report expands (the results folder's
# name escaped: it may hold [ * ?)
REPORT_LOG_PATTERNS = [
    f"{glob.escape(RESULTS)}/{domain}/{stage}/**/logs/metrics.csv"
    for domain in REPORT_DOMAINS
    for stage in ("finetune", "pretrain")
]
REPORT_BENCHMARKS = f"{glob.escape(RESULTS)}/benchmarks/**/*.tsv"
# every table and plot the report stage writes with a fixed name, flagged for --report
REPORT_FILES = (
    [
        registered(
            f"{RESULTS}/report/{name}.csv",
            caption=f"../report/{name}.rst",
            category="Report",
        )
        for name in ("metrics_tidy", "resources")
    ]
    + [
        registered(
            f"{RESULTS}/report/{domain}_{table}.csv",
            caption=f"../report/{domain}_{table}.rst",
            category=REPORT_DOMAIN_TITLES[domain],
            subcategory="Tables",
        )
        for domain in REPORT_DOMAINS
        for table in REPORT_TABLES
    ]
    + [
        registered(
            f"{RESULTS}/report/plots/{domain}_{plot}.png",
            caption=f"../report/{domain}_{plot}.rst",
            category=REPORT_DOMAIN_TITLES[domain],
            subcategory="Plots",
        )
        for domain in REPORT_DOMAINS
        for plot in REPORT_PLOTS
    ]
)


rule report_tables:
    input:
        metrics=all_metrics_files(),
        pretrain=pretrain_records(),
    output:
        f"{RESULTS}/tables/tables.md",
    params:
        out=output_dir,
        benchmarks=REPORT_BENCHMARKS,
    log:
        f"{RESULTS}/logs/report_tables.log",
    shell:
        "segpretrain report --input {input.metrics:q} --pretrain {input.pretrain:q} "
        "--benchmarks {params.benchmarks:q} --out {params.out:q} --no-plots > {log:q} 2>&1"


rule report:
    input:
        metrics=all_metrics_files(),
        pretrain=pretrain_records(),
    output:
        html=registered(
            f"{RESULTS}/report/index.html",
            caption="../report/index.rst",
            category="Report",
        ),
        files=REPORT_FILES,
    params:
        out=output_dir,
        domains=REPORT_DOMAINS,
        logs=REPORT_LOG_PATTERNS,
        benchmarks=REPORT_BENCHMARKS,
    log:
        f"{RESULTS}/logs/report.log",
    shell:
        "segpretrain report --input {input.metrics:q} --pretrain {input.pretrain:q} --out {params.out:q} "
        "--domains {params.domains:q} --logs {params.logs:q} --benchmarks {params.benchmarks:q} > {log:q} 2>&1"
