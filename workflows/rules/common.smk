# Helper functions for targets and paths; rules stay free of lambdas.
# Every path and config string reaches the shell quoted: rules write {input:q}, {output:q},
# {log:q}, {params.x:q}, and functions that give several shell words return a list (each word
# quoted alone), never one string of words.
import glob
import os
import re

RESULTS = config["results"]


def mri_cfg():
    return config["mri"]


def mri_raw_input():
    """The raw MRI dataset folder: the user's own, or the generated demo."""
    if mri_cfg().get("input"):
        return mri_cfg()["input"]
    return f"{RESULTS}/mri/raw"


def mri_preprocess_extra_args():
    """The optional `medseg preprocess` options the config sets, as shell words: subject keys,
    fixed or file-given splits, N4."""
    p = mri_cfg()["preprocess"]
    words = []
    for key in ("subject_pattern", "subject_csv", "splits_from"):
        if p.get(key) is not None:
            words += [f"--{key.replace('_', '-')}", str(p[key])]
    if p.get("splits_from") is not None:
        words += ["--splits-fold", str(p.get("splits_fold", 0))]
    for key in ("test_subjects", "val_subjects"):
        if p.get(key):
            words += [f"--{key.replace('_', '-')}", *[str(s) for s in p[key]]]
    if p.get("n4"):
        words.append("--n4")
    return words


def mri_labeled_subjects_args(wildcards):
    """--labeled-subjects per fixed combination of this cell's budget (finetune.labeled_subjects)."""
    combos = mri_cfg()["finetune"].get("labeled_subjects", {}).get(str(wildcards.budget), [])
    return [word for combo in combos for word in ("--labeled-subjects", *[str(s) for s in combo])]


# the semi-supervised modes of fine-tuning (segcore.config.SEMI_MODES; docs/semi_supervised.md)
SEMI_MODES = ("self-training", "fixmatch", "unimatch")
# option value types of the semi section's `options` (the --semi-<key> options of the stages)
SEMI_PAIR_OPTIONS = ("blur_sigma", "cutmix_area")


def split_semi(method):
    """A cell's method name → (init method, semi mode or None): GD+LR+fixmatch → (GD+LR, fixmatch)."""
    init, _, last = method.rpartition("+")
    return (init, last) if init and last in SEMI_MODES else (method, None)


def semi_cfg(section):
    return section.get("semi") or {}


def semi_methods(section):
    """The semi-supervised cells' method names: every semi.modes entry crossed with the init
    methods of semi.methods that are among `methods` (null: every method), `<method>+<mode>`."""
    s = semi_cfg(section)
    inits = [m for m in (s.get("methods") or section["methods"]) if m in section["methods"]]
    return [f"{m}+{mode}" for m in inits for mode in s.get("modes", [])]


def all_methods(section):
    """Every method name of a domain's fine-tuning cells: the methods, then the semi-supervised ones."""
    return list(section["methods"]) + semi_methods(section)


def _section_of(wildcards):
    """The config section of a job: rs (its wildcards have pct) or mri."""
    return rs_cfg() if "pct" in wildcards.keys() else mri_cfg()


def semi_args(wildcards):
    """--semi and its options (config semi.options) for a semi-supervised cell, as shell words; [] otherwise."""
    section = _section_of(wildcards)
    mode = split_semi(wildcards.method)[1]
    if mode is None:
        return []
    words = ["--semi", mode]
    for key, value in (semi_cfg(section).get("options") or {}).items():
        values = value if key in SEMI_PAIR_OPTIONS else [value]
        words += [f"--semi-{key.replace('_', '-')}", *[str(v) for v in values]]
    return words


def init_method(wildcards):
    """--method of a fine-tuning cell: its init method (the stage appends the semi mode)."""
    return split_semi(wildcards.method)[0]


def finetune_steps(wildcards):
    """--steps of a fine-tuning cell: semi.steps for semi-supervised cells when set, else finetune.steps."""
    section = _section_of(wildcards)
    if split_semi(wildcards.method)[1] is not None and semi_cfg(section).get("steps"):
        return semi_cfg(section)["steps"]
    return section["finetune"]["steps"]


# method `pretrained`: fine-tuning from an encoder pretrained elsewhere (docs/pretrained_encoders.md),
# the weights from <domain>.encoder_weights: a named source or a state-dict file
NAMED_ENCODER_SOURCES = ("imagenet", "ssl4eo-s12")


def check_pretrained_weights(domain, section):
    """Method `pretrained` needs <domain>.encoder_weights; a named source only where the domain has one."""
    if not section.get("enabled", True) or "pretrained" not in section["methods"]:
        return
    weights = section.get("encoder_weights")
    if not weights:
        raise ValueError(
            f"{domain}.methods lists 'pretrained' but {domain}.encoder_weights is not set: give a state-dict file "
            f"or a named source ({', '.join(NAMED_ENCODER_SOURCES)}; docs/pretrained_encoders.md)"
        )
    if domain == "mri" and weights in NAMED_ENCODER_SOURCES:
        raise ValueError(
            f"mri.encoder_weights: {weights!r} has no weights for the MRI U-Net; give a state-dict file of its encoder "
            "(docs/pretrained_encoders.md)"
        )


def encoder_weights_file(wildcards):
    """The weights file of a `pretrained` cell as a job input (a named source is no file: [])."""
    weights = _section_of(wildcards).get("encoder_weights")
    if split_semi(wildcards.method)[0] != "pretrained" or not weights or weights in NAMED_ENCODER_SOURCES:
        return []
    return weights


def encoder_weights_args(wildcards):
    """--encoder-weights of a `pretrained` cell (and its semi-supervised cells), as shell words."""
    if split_semi(wildcards.method)[0] != "pretrained":
        return []
    return ["--encoder-weights", str(_section_of(wildcards)["encoder_weights"])]


def mri_init_checkpoint(wildcards):
    """The pretrained checkpoint a fine-tuning cell starts from (none: random init)."""
    method = split_semi(wildcards.method)[0]
    if method in ("none", "pretrained"):
        return []
    return f"{RESULTS}/mri/pretrain/{method}/model.pt"


def init_args(wildcards, input):
    """--init and the checkpoint, as shell words (none for random init)."""
    return ["--init", input.init] if input.get("init") else []


def budgets_for(method, section):
    """Label budgets of one method; the all-labels upper bound only where configured; a
    semi-supervised method at semi.budgets (null: every budget of finetune.budgets)."""
    ft = section["finetune"]
    if split_semi(method)[1] is not None:
        return [str(b) for b in (semi_cfg(section).get("budgets") or ft["budgets"])]
    budgets = [str(b) for b in ft["budgets"]]
    if method in ft.get("all_labels_methods", []):
        budgets.append(str(ft.get("all_budget", "all")))
    return budgets


def all_budget(section):
    return str(section["finetune"].get("all_budget", "all"))


def seeds_for(section, budget):
    """Seeds of one label budget: finetune.all_labels_seeds for the all-labels budget when set."""
    ft = section["finetune"]
    if str(budget) == all_budget(section) and ft.get("all_labels_seeds"):
        return ft["all_labels_seeds"]
    return ft["seeds"]


def cell_seeds(section, all_labels):
    """Seeds of the cells of a fine-tuning / evaluation rule: the all-labels rule's or the others'."""
    return seeds_for(section, all_budget(section) if all_labels else None)


def budget_regex(section, all_labels):
    """Wildcard constraint of the evaluation rules: the all-labels budget, or every other one
    (the semi-supervised cells' budgets included)."""
    ab = all_budget(section)
    others = [str(b) for b in section["finetune"]["budgets"]] + [str(b) for b in semi_cfg(section).get("budgets") or []]
    values = [ab] if all_labels else [b for b in dict.fromkeys(others) if b != ab]
    return "|".join(re.escape(v) for v in values) or "(?!)"


def finetune_per_seed():
    """finetune_jobs: seed → one fine-tuning job per seed; cell (default) → one per cell."""
    return config.get("finetune_jobs", "cell") == "seed"


def finetune_outputs(cell_dir, section, all_labels, name):
    """Output `name` of a fine-tuning job in each seed folder of the cell folder `cell_dir`
    (wildcards in single braces): one file with a {seed} wildcard per seed job, or one per seed of
    the cell (the all-labels budget's seeds for the all-labels rule)."""
    if finetune_per_seed():
        return f"{cell_dir}/seed_{{seed}}/{name}"
    return [f"{cell_dir}/seed_{s}/{name}" for s in cell_seeds(section, all_labels)]


def finetune_log(stem):
    """The log of a fine-tuning job: one per cell, or one per seed."""
    return f"{stem}_seed_{{seed}}.log" if finetune_per_seed() else f"{stem}.log"


def benchmark_file(rule, job):
    """Snakemake's time and memory record of a job: results/benchmarks/<rule>/<job>.tsv; the
    report's Compute table reads the rule from the folder (segcore.report.resources)."""
    return f"{RESULTS}/benchmarks/{rule}/{job}.tsv"


def finetune_benchmark_file(rule, job):
    """The benchmark file of a fine-tuning job: one per cell, or one per seed (as finetune_log)."""
    return benchmark_file(rule, f"{job}_seed_{{seed}}" if finetune_per_seed() else job)


def finetune_priority(domain, all_labels):
    """Scheduling priority of a fine-tuning rule: the longest jobs first, so that a run ends on
    short evaluation jobs rather than on one long cell with the other cores idle (pretraining 4;
    a CPU job of the demo: remote-sensing cell of 3 seeds ~125 s, its all-labels cell and an MRI
    cell ~80 s, the MRI all-labels cell ~50 s, an evaluation 12-19 s)."""
    return {("rs", False): 3, ("rs", True): 2, ("mri", False): 2, ("mri", True): 1}[(domain, all_labels)]


def job_seeds(wildcards):
    """--seed of a fine-tuning job: its seed, or every seed of its cell (as finetune_outputs)."""
    if finetune_per_seed():
        return [wildcards.seed]
    section, budget = (rs_cfg(), wildcards.pct) if "pct" in wildcards.keys() else (mri_cfg(), wildcards.budget)
    return [str(s) for s in seeds_for(section, budget)]


def model_dirs(wildcards, output):
    """--out of a fine-tuning job: the folder of each model.pt, in the order of job_seeds."""
    return output_dirs(wildcards, [output.model] if isinstance(output.model, str) else output.model)


def output_dirs(wildcards, output):
    """The folder of each output file (the --out of an evaluation job, one per seed)."""
    return [os.path.dirname(f) for f in output]


def output_dir(wildcards, output):
    """The folder of the first output file (the --out of a stage that writes one folder)."""
    return os.path.dirname(output[0])


def mri_cell_models(wildcards):
    """Every seed's fine-tuned model of one MRI cell (method, budget): one evaluation job."""
    return [
        f"{RESULTS}/mri/finetune/{wildcards.method}/budget_{wildcards.budget}/seed_{s}/model.pt"
        for s in seeds_for(mri_cfg(), wildcards.budget)
    ]


def mri_cell_metrics(all_labels):
    """Outputs of one MRI evaluation job: metrics.json of each seed of a (method, budget) cell."""
    c = mri_cfg()
    return expand(
        f"{RESULTS}/mri/evaluate/{{{{method}}}}/budget_{{{{budget}}}}/seed_{{seed}}/metrics.json",
        seed=cell_seeds(c, all_labels),
    )


def mri_metrics_files():
    c = mri_cfg()
    files = []
    for method in all_methods(c):
        for budget in budgets_for(method, c):
            files += expand(
                f"{RESULTS}/mri/evaluate/{method}/budget_{budget}/seed_{{seed}}/metrics.json",
                seed=seeds_for(c, budget),
            )
    return files


def rs_cfg():
    return config["rs"]


def rs_enabled():
    return rs_cfg().get("enabled", False)


def rs_raw_input():
    if rs_cfg().get("input"):
        return rs_cfg()["input"]
    return f"{RESULTS}/rs/raw"


def rs_init_checkpoint(wildcards):
    """Self-supervised pretrained checkpoint of an rs fine-tuning cell (none: random init)."""
    pre = rs_pretrain_method(split_semi(wildcards.method)[0])
    if pre is None:
        return []
    return f"{RESULTS}/rs/pretrain/{pre}/{wildcards.fusion}/model.pt"


# the generic self-supervised baselines (docs/ssl_baselines.md): one rule per domain runs them
BASELINES = ("mocov2", "byol", "densecl", "detcon")


def rs_pretrain_method(method):
    """The pretraining part of an rs method name (hpcl-ssl, hpcl-ssl+sup → hpcl-ssl; a generic
    baseline → itself; none, hpcl-sup → None)."""
    if method in BASELINES:
        return method
    return "hpcl-ssl" if method.startswith("hpcl-ssl") else None


def baseline_args(section):
    """`<cli> pretrain` options of the generic baselines from <domain>.pretrain.baselines, as shell
    words; a null value leaves the option out (the method's own default)."""
    b = section["pretrain"]["baselines"]
    words = ["--steps", str(b["steps"]), "--batch-size", str(b["batch_size"]), "--lr", str(b["lr"])]
    words += ["--crop-scale", *str_list(b["crop_scale"])]
    words += ["--dense-weight", str(b["dense_weight"]), "--n-masks", str(b["n_masks"])]
    for option, key in (("--queue-size", "queue_size"), ("--momentum", "momentum"), ("--temperature", "temperature")):
        if b.get(key) is not None:
            words += [option, str(b[key])]
    return words


def mri_baseline_args(wildcards):
    return baseline_args(mri_cfg())


def rs_baseline_args(wildcards):
    return baseline_args(rs_cfg())


def rs_finetune_extra_args(wildcards):
    """The class-aware hyper-pixel term of the 'sup' methods (hpcl-sup, hpcl-ssl+sup), every
    option from config rs.hpcl (defaults from the schema), as shell words."""
    if not split_semi(wildcards.method)[0].endswith("sup"):
        return []
    h = rs_cfg()["hpcl"]
    options = {"weight": "weight", "warmup": "warmup", "queue": "queue", "temperature": "temperature", "mochi": "mochi",
               "unlabeled": "unlabeled", "pseudo-threshold": "pseudo_threshold", "unlabeled-anchors": "unlabeled_anchors"}
    return [word for option, key in options.items() for word in (f"--hpcl-{option}", str(h[key]))]


def rs_fusions_for(method):
    """Fusion variants of one rs method: rs.hpcl.fusions for the HPCL methods when set; a
    semi-supervised method: rs.semi.fusions when set, else those of its init method."""
    c = rs_cfg()
    init, mode = split_semi(method)
    if mode is not None:
        return semi_cfg(c).get("fusions") or rs_fusions_for(init)
    hpcl_fusions = c.get("hpcl", {}).get("fusions")
    return hpcl_fusions if method.startswith("hpcl") and hpcl_fusions else c["fusions"]


def rs_cell_models(wildcards):
    """Every seed's fine-tuned model of one remote-sensing cell (method, fusion, percentage)."""
    return [
        f"{RESULTS}/rs/finetune/{wildcards.method}/{wildcards.fusion}/pct_{wildcards.pct}/seed_{s}/model.pt"
        for s in seeds_for(rs_cfg(), wildcards.pct)
    ]


def rs_cell_metrics(all_labels):
    """Outputs of one remote-sensing evaluation job: metrics.json of each seed of a cell."""
    c = rs_cfg()
    return expand(
        f"{RESULTS}/rs/evaluate/{{{{method}}}}/{{{{fusion}}}}/pct_{{{{pct}}}}/seed_{{seed}}/metrics.json",
        seed=cell_seeds(c, all_labels),
    )


def rs_metrics_files():
    c = rs_cfg()
    files = []
    for method in all_methods(c):
        for pct in budgets_for(method, c):
            files += expand(
                f"{RESULTS}/rs/evaluate/{method}/{{fusion}}/pct_{pct}/seed_{{seed}}/metrics.json",
                fusion=rs_fusions_for(method),
                seed=seeds_for(c, pct),
            )
    return files


def rs_showcase_scene():
    return rs_cfg().get("predict_scene", "scene_00")


def rs_showcase_model():
    """The model whose whole-scene prediction is written as a GeoTIFF: the first cell."""
    c = rs_cfg()
    pct = budgets_for(c["methods"][0], c)[0]
    return f"{RESULTS}/rs/finetune/{c['methods'][0]}/{c['fusions'][0]}/pct_{pct}/seed_{c['finetune']['seeds'][0]}/model.pt"


def rs_showcase_image(wildcards, input):
    return f"{input.raw}/scenes/{rs_showcase_scene()}_image.tif"


def rs_showcase_dem(wildcards, input):
    return f"{input.raw}/scenes/{rs_showcase_scene()}_dem.tif"


def all_metrics_files():
    files = []
    if mri_cfg().get("enabled", True):
        files += mri_metrics_files()
    if config.get("rs", {}).get("enabled", False):
        files += rs_metrics_files()
    return files


def pretrain_records():
    """train.json of every pretraining stage the evaluated methods start from (both stages of
    a G*+L* method), for the report's pretext-loss-against-chance table."""
    files = []
    if mri_cfg().get("enabled", True):
        for method in mri_cfg()["methods"]:
            if method not in ("none", "pretrained"):
                stages = [method.split("+")[0], method] if "+" in method else [method]
                files += [f"{RESULTS}/mri/pretrain/{m}/train.json" for m in stages]
    if rs_enabled():
        for method in rs_cfg()["methods"]:
            pre = rs_pretrain_method(method)
            if pre is not None:
                files += [f"{RESULTS}/rs/pretrain/{pre}/{fusion}/train.json" for fusion in rs_fusions_for(method)]
    return list(dict.fromkeys(files))


def all_targets():
    targets = [f"{RESULTS}/tables/tables.md", f"{RESULTS}/report/index.html"]
    if rs_enabled() and not rs_cfg().get("input"):
        targets.append(f"{RESULTS}/rs/predict/{rs_showcase_scene()}_image_prediction.tif")
    return targets


def str_list(values):
    """Config numbers as shell words: one word each, quoted by {params.x:q}."""
    return [str(v) for v in values]


def comma_list(values):
    return ",".join(str(v) for v in values)
