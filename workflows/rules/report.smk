# The results report: tables, plots and one HTML page over every evaluated cell.
# Every table and plot is registered with a one-sentence caption (workflows/report/*.rst)
# for `snakemake --report report.html`.
from snakemake.io import report as registered

REPORT_TABLES = ["summary", "per_class", "gains"]
REPORT_PLOTS = ["budget", "overlays", "finetune_curves", "pretrain_curves"]
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
# Lightning logs of every training stage; the report keeps the curves of evaluated runs
REPORT_LOG_PATTERNS = [
    f"{RESULTS}/{domain}/{stage}/**/logs/metrics.csv"
    for domain in REPORT_DOMAINS
    for stage in ("finetune", "pretrain")
]
# every table and plot the report stage writes with a fixed name, flagged for --report
REPORT_FILES = (
    [
        registered(
            f"{RESULTS}/report/metrics_tidy.csv",
            caption="../report/metrics_tidy.rst",
            category="Report",
        )
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
        all_metrics_files(),
    output:
        f"{RESULTS}/tables/tables.md",
    conda:
        "../envs/segpretrain.yaml"
    log:
        f"{RESULTS}/logs/report_tables.log",
    shell:
        "medseg report --input {input} --out $(dirname {output}) --no-plots > {log} 2>&1"


rule report:
    input:
        all_metrics_files(),
    output:
        html=registered(
            f"{RESULTS}/report/index.html",
            caption="../report/index.rst",
            category="Report",
        ),
        files=REPORT_FILES,
    params:
        domains=REPORT_DOMAINS,
        logs=REPORT_LOG_PATTERNS,
    conda:
        "../envs/segpretrain.yaml"
    log:
        f"{RESULTS}/logs/report.log",
    shell:
        "medseg report --input {input} --out $(dirname {output.html}) --domains {params.domains} "
        "--logs {params.logs:q} > {log} 2>&1"
