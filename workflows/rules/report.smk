# Tables over every evaluated cell.


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
        "medseg report --input {input} --out $(dirname {output}) > {log} 2>&1"
