# Helper functions for targets and paths; rules stay free of lambdas.

RESULTS = config["results"]


def mri_cfg():
    return config["mri"]


def mri_raw_input():
    """The raw MRI dataset folder: the user's own, or the generated demo."""
    if mri_cfg().get("input"):
        return mri_cfg()["input"]
    return f"{RESULTS}/mri/raw"


def mri_init_args(wildcards, input):
    return f"--init {input.init}" if getattr(input, "init", None) else ""


def mri_metrics_files():
    c = mri_cfg()
    return expand(
        f"{RESULTS}/mri/evaluate/{{method}}/budget_{{budget}}/seed_{{seed}}/metrics.json",
        method=c["methods"],
        budget=[str(b) for b in c["finetune"]["budgets"]],
        seed=c["finetune"]["seeds"],
    )


def all_metrics_files():
    files = []
    if mri_cfg().get("enabled", True):
        files += mri_metrics_files()
    if config.get("rs", {}).get("enabled", False):
        files += rs_metrics_files()
    return files


def all_targets():
    return [f"{RESULTS}/tables/tables.md"]


def space_list(values):
    return " ".join(str(v) for v in values)


def comma_list(values):
    return ",".join(str(v) for v in values)
