# Contrastive pretraining and few-label segmentation for MRI and remote sensing.
# Thin on purpose: the experiment is the config, the rules live in workflows/rules/.
from snakemake.utils import min_version, validate

min_version("8.10")


configfile: "workflows/config/config.yaml"


validate(config, "workflows/config/config.schema.yaml")


include: "workflows/rules/common.smk"
include: "workflows/rules/medical.smk"
include: "workflows/rules/remote_sensing.smk"
include: "workflows/rules/report.smk"


check_pretrained_weights("mri", config["mri"])
check_pretrained_weights("rs", config["rs"])


# Jobs of seconds and little memory run in the Snakemake process itself, also under a cluster
# executor, where a queue wait would cost more than the job (demo data: 4-5 s, tables and
# report: 2-8 s on the demo, bench/README.md; they read only small files).
localrules:
    all,
    mri_demo_data,
    rs_demo_data,
    report_tables,
    report,


rule all:
    input:
        all_targets(),
    default_target: True
