# MRI rules: each calls one `medseg <stage>` with explicit inputs and outputs.


wildcard_constraints:
    method=r"[A-Za-z0-9+\-]+",
    budget=r"[0-9]+|all",
    seed=r"[0-9]+",


rule mri_demo_data:
    output:
        directory(f"{RESULTS}/mri/raw"),
    params:
        n=mri_cfg()["demo"]["n_subjects"],
        slices=mri_cfg()["demo"]["n_slices"],
        size=mri_cfg()["demo"]["size"],
        seed=mri_cfg()["demo"]["seed"],
    conda:
        "../envs/segpretrain.yaml"
    log:
        f"{RESULTS}/logs/mri_demo_data.log",
    shell:
        "medseg demo-data --out {output} --n-subjects {params.n} --n-slices {params.slices} "
        "--size {params.size} --seed {params.seed} > {log} 2>&1"


rule mri_preprocess:
    input:
        mri_raw_input(),
    output:
        directory(f"{RESULTS}/mri/prepared"),
    params:
        layout=mri_cfg()["layout"],
        spacing=space_list(mri_cfg()["preprocess"]["target_spacing"]),
        size=space_list(mri_cfg()["preprocess"]["image_size"]),
        p=mri_cfg()["preprocess"],
    conda:
        "../envs/segpretrain.yaml"
    log:
        f"{RESULTS}/logs/mri_preprocess.log",
    shell:
        "medseg preprocess --input {input} --out {output} --layout {params.layout} "
        "--target-spacing {params.spacing} --image-size {params.size} "
        "--partitions {params.p[partitions]} --n-test {params.p[n_test]} --n-val {params.p[n_val]} "
        "--n-labeled {params.p[n_labeled]} --seed {params.p[seed]} > {log} 2>&1"


rule mri_pretrain_global:
    input:
        data=f"{RESULTS}/mri/prepared",
    output:
        model=f"{RESULTS}/mri/pretrain/{{gmethod}}/model.pt",
    wildcard_constraints:
        gmethod=r"GR|GD-|GD",
    params:
        p=mri_cfg()["pretrain"]["global"],
        channels=comma_list(mri_cfg()["network"]["channels"]),
        seed=mri_cfg()["pretrain"]["seed"],
    threads: config["threads"]
    priority: 4  # the longest jobs first (README "The default experiment"); the pretrained cells wait for it
    resources:
        mem_mb=2000,
    conda:
        "../envs/segpretrain.yaml"
    log:
        f"{RESULTS}/logs/mri_pretrain/{{gmethod}}.log",
    shell:
        "medseg pretrain --stage global --strategy {wildcards.gmethod} --data {input.data} "
        "--out $(dirname {output.model}) --channels {params.channels} --steps {params.p[steps]} "
        "--volumes-per-batch {params.p[volumes_per_batch]} --lr {params.p[lr]} "
        "--temperature {params.p[temperature]} --seed {params.seed} --threads {threads} > {log} 2>&1"


rule mri_pretrain_hpcl:
    input:
        data=f"{RESULTS}/mri/prepared",
    output:
        model=f"{RESULTS}/mri/pretrain/hpcl/model.pt",
    params:
        p=mri_cfg()["pretrain"]["hpcl"],
        channels=comma_list(mri_cfg()["network"]["channels"]),
        crop=space_list(mri_cfg()["pretrain"]["hpcl"]["crop_scale"]),
        seed=mri_cfg()["pretrain"]["seed"],
    threads: config["threads"]
    priority: 4  # the longest jobs first (README "The default experiment"); the pretrained cells wait for it
    resources:
        mem_mb=2000,
    conda:
        "../envs/segpretrain.yaml"
    log:
        f"{RESULTS}/logs/mri_pretrain/hpcl.log",
    shell:
        "medseg pretrain --method hpcl --data {input.data} --out $(dirname {output.model}) "
        "--channels {params.channels} --steps {params.p[steps]} --batch-size {params.p[batch_size]} "
        "--lr {params.p[lr]} --queue-size {params.p[queue_size]} --momentum {params.p[momentum]} "
        "--temperature {params.p[temperature]} --crop-scale {params.crop} --seed {params.seed} "
        "--threads {threads} > {log} 2>&1"


rule mri_pretrain_local:
    input:
        data=f"{RESULTS}/mri/prepared",
        init=f"{RESULTS}/mri/pretrain/{{gmethod}}/model.pt",
    output:
        model=f"{RESULTS}/mri/pretrain/{{gmethod}}+{{lmethod}}/model.pt",
    wildcard_constraints:
        gmethod=r"GR|GD-|GD",
        lmethod=r"LR|LD",
    params:
        p=mri_cfg()["pretrain"]["local"],
        seed=mri_cfg()["pretrain"]["seed"],
    threads: config["threads"]
    priority: 4  # the longest jobs first (README "The default experiment"); the pretrained cells wait for it
    resources:
        mem_mb=2000,
    conda:
        "../envs/segpretrain.yaml"
    log:
        f"{RESULTS}/logs/mri_pretrain/{{gmethod}}+{{lmethod}}.log",
    shell:
        "medseg pretrain --stage local --strategy {wildcards.lmethod} --init {input.init} "
        "--data {input.data} --out $(dirname {output.model}) --steps {params.p[steps]} "
        "--volumes-per-batch {params.p[volumes_per_batch]} --lr {params.p[lr]} "
        "--temperature {params.p[temperature]} --local-negatives {params.p[negatives]} "
        "--noise-std {params.p[noise_std]} --seed {params.seed} --threads {threads} > {log} 2>&1"


# One job trains every seed of a cell (finetune_jobs: cell) or one seed (finetune_jobs: seed).
# Two rules, as for evaluation: the all-labels budget may have its own seeds.
for _rule, _all_labels in (("mri_finetune", False), ("mri_finetune_all_labels", True)):

    rule:
        name:
            _rule
        input:
            data=f"{RESULTS}/mri/prepared",
            init=mri_init_checkpoint,
        output:
            model=finetune_outputs(f"{RESULTS}/mri/finetune/{{method}}/budget_{{budget}}", mri_cfg(), _all_labels, "model.pt"),
            train=finetune_outputs(f"{RESULTS}/mri/finetune/{{method}}/budget_{{budget}}", mri_cfg(), _all_labels, "train.json"),
        wildcard_constraints:
            budget=budget_regex(mri_cfg(), _all_labels),
        params:
            init=init_args,
            ft=mri_cfg()["finetune"],
            channels=comma_list(mri_cfg()["network"]["channels"]),
            seeds=job_seeds,
            outs=model_dirs,
        threads: config["threads"]
        priority: finetune_priority("mri", _all_labels)
        resources:
            mem_mb=2000,
        conda:
            "../envs/segpretrain.yaml"
        log:
            finetune_log(f"{RESULTS}/logs/mri_finetune/{{method}}_budget_{{budget}}"),
        shell:
            "medseg finetune --data {input.data} --out {params.outs} --budget {wildcards.budget} "
            "--seed {params.seeds} --method {wildcards.method} {params.init} --channels {params.channels} "
            "--steps {params.ft[steps]} --batch-size {params.ft[batch_size]} --lr {params.ft[lr]} "
            "--val-every {params.ft[val_every]} --threads {threads} > {log} 2>&1"


# One job scores every seed of a cell (method, budget): the stage's imports cost more than
# scoring a model. Two rules, because the all-labels budget may have its own seeds
# (finetune.all_labels_seeds) and a rule's outputs cannot depend on a wildcard.
for _rule, _all_labels in (("mri_evaluate", False), ("mri_evaluate_all_labels", True)):

    rule:
        name:
            _rule
        input:
            data=f"{RESULTS}/mri/prepared",
            models=mri_cell_models,
        output:
            mri_cell_metrics(_all_labels),
        wildcard_constraints:
            budget=budget_regex(mri_cfg(), _all_labels),
        params:
            outs=output_dirs,
        threads: config["threads"]
        conda:
            "../envs/segpretrain.yaml"
        log:
            f"{RESULTS}/logs/mri_evaluate/{{method}}_budget_{{budget}}.log",
        shell:
            "medseg evaluate --data {input.data} --model {input.models} --out {params.outs} "
            "--threads {threads} > {log} 2>&1"