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


rule all:
    input:
        all_targets(),
    default_target: True
