# Helper functions for targets and paths; rules stay free of lambdas.

RESULTS = config["results"]


def mri_cfg():
    return config["mri"]


def mri_raw_input():
    """The raw MRI dataset folder: the user's own, or the generated demo."""
    if mri_cfg().get("input"):
        return mri_cfg()["input"]
    return f"{RESULTS}/mri/raw"


def mri_init_checkpoint(wildcards):
    """The pretrained checkpoint a fine-tuning cell starts from (none: random init)."""
    if wildcards.method == "none":
        return []
    return f"{RESULTS}/mri/pretrain/{wildcards.method}/model.pt"


def init_args(wildcards, input):
    return f"--init {input.init}" if input.get("init") else ""


def budgets_for(method, section):
    """Label budgets of one method; the all-labels upper bound only where configured."""
    ft = section["finetune"]
    budgets = [str(b) for b in ft["budgets"]]
    if method in ft.get("all_labels_methods", []):
        budgets.append(str(ft.get("all_budget", "all")))
    return budgets


def mri_metrics_files():
    c = mri_cfg()
    files = []
    for method in c["methods"]:
        files += expand(
            f"{RESULTS}/mri/evaluate/{method}/budget_{{budget}}/seed_{{seed}}/metrics.json",
            budget=budgets_for(method, c),
            seed=c["finetune"]["seeds"],
        )
    return files


def all_metrics_files():
    files = []
    if mri_cfg().get("enabled", True):
        files += mri_metrics_files()
    if config.get("rs", {}).get("enabled", False):
        files += rs_metrics_files()
    return files


def all_targets():
    return [f"{RESULTS}/tables/tables.md", f"{RESULTS}/report/index.html"]


def space_list(values):
    return " ".join(str(v) for v in values)


def comma_list(values):
    return ",".join(str(v) for v in values)
