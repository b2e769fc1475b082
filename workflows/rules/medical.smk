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
    log:
        f"{RESULTS}/logs/mri_demo_data.log",
    shell:
        "medseg demo-data --out {output:q} --n-subjects {params.n:q} --n-slices {params.slices:q} "
        "--size {params.size:q} --seed {params.seed:q} > {log:q} 2>&1"


rule mri_preprocess:
    input:
        mri_raw_input(),
    output:
        directory(f"{RESULTS}/mri/prepared"),
    params:
        layout=mri_cfg()["layout"],
        spacing=str_list(mri_cfg()["preprocess"]["target_spacing"]),
        size=str_list(mri_cfg()["preprocess"]["image_size"]),
        p=mri_cfg()["preprocess"],
        extra=mri_preprocess_extra_args(),
    log:
        f"{RESULTS}/logs/mri_preprocess.log",
    benchmark:
        benchmark_file("mri_preprocess", "mri_preprocess")
    shell:
        "medseg preprocess --input {input:q} --out {output:q} --layout {params.layout:q} "
        "--target-spacing {params.spacing:q} --image-size {params.size:q} "
        "--partitions {params.p[partitions]:q} --n-test {params.p[n_test]:q} --n-val {params.p[n_val]:q} "
        "--n-labeled {params.p[n_labeled]:q} --seed {params.p[seed]:q} {params.extra:q} > {log:q} 2>&1"


rule mri_pretrain_global:
    input:
        data=f"{RESULTS}/mri/prepared",
    output:
        model=f"{RESULTS}/mri/pretrain/{{gmethod}}/model.pt",
        train=f"{RESULTS}/mri/pretrain/{{gmethod}}/train.json",
    wildcard_constraints:
        gmethod=r"GR|GD-|GD",
    params:
        out=output_dir,
        p=mri_cfg()["pretrain"]["global"],
        channels=comma_list(mri_cfg()["network"]["channels"]),
        seed=mri_cfg()["pretrain"]["seed"],
    threads: config["threads"]
    priority: 4  # the longest jobs first (README "The default experiment"); the pretrained cells wait for it
    resources:
        mem_mb=2000,
    log:
        f"{RESULTS}/logs/mri_pretrain/{{gmethod}}.log",
    benchmark:
        benchmark_file("mri_pretrain_global", "{gmethod}")
    shell:
        "medseg pretrain --stage global --strategy {wildcards.gmethod:q} --data {input.data:q} "
        "--out {params.out:q} --channels {params.channels:q} --steps {params.p[steps]:q} "
        "--volumes-per-batch {params.p[volumes_per_batch]:q} --lr {params.p[lr]:q} "
        "--temperature {params.p[temperature]:q} --seed {params.seed:q} --threads {threads} > {log:q} 2>&1"


rule mri_pretrain_hpcl:
    input:
        data=f"{RESULTS}/mri/prepared",
    output:
        model=f"{RESULTS}/mri/pretrain/hpcl/model.pt",
        train=f"{RESULTS}/mri/pretrain/hpcl/train.json",
    params:
        out=output_dir,
        p=mri_cfg()["pretrain"]["hpcl"],
        channels=comma_list(mri_cfg()["network"]["channels"]),
        crop=str_list(mri_cfg()["pretrain"]["hpcl"]["crop_scale"]),
        seed=mri_cfg()["pretrain"]["seed"],
    threads: config["threads"]
    priority: 4  # the longest jobs first (README "The default experiment"); the pretrained cells wait for it
    resources:
        mem_mb=2000,
    log:
        f"{RESULTS}/logs/mri_pretrain/hpcl.log",
    benchmark:
        benchmark_file("mri_pretrain_hpcl", "hpcl")
    shell:
        "medseg pretrain --method hpcl --data {input.data:q} --out {params.out:q} "
        "--channels {params.channels:q} --steps {params.p[steps]:q} --batch-size {params.p[batch_size]:q} "
        "--lr {params.p[lr]:q} --queue-size {params.p[queue_size]:q} --momentum {params.p[momentum]:q} "
        "--temperature {params.p[temperature]:q} --crop-scale {params.crop:q} --seed {params.seed:q} "
        "--threads {threads} > {log:q} 2>&1"


rule mri_pretrain_baseline:
    input:
        data=f"{RESULTS}/mri/prepared",
    output:
        model=f"{RESULTS}/mri/pretrain/{{bmethod}}/model.pt",
        train=f"{RESULTS}/mri/pretrain/{{bmethod}}/train.json",
    wildcard_constraints:
        bmethod=r"mocov2|byol|densecl|detcon",
    params:
        out=output_dir,
        args=mri_baseline_args,
        channels=comma_list(mri_cfg()["network"]["channels"]),
        seed=mri_cfg()["pretrain"]["seed"],
    threads: config["threads"]
    priority: 4  # the longest jobs first (README "The default experiment"); the pretrained cells wait for it
    resources:
        mem_mb=2000,
    log:
        f"{RESULTS}/logs/mri_pretrain/{{bmethod}}.log",
    benchmark:
        benchmark_file("mri_pretrain_baseline", "{bmethod}")
    shell:
        "medseg pretrain --method {wildcards.bmethod:q} --data {input.data:q} --out {params.out:q} "
        "--channels {params.channels:q} {params.args:q} --seed {params.seed:q} --threads {threads} > {log:q} 2>&1"


rule mri_pretrain_local:
    input:
        data=f"{RESULTS}/mri/prepared",
        init=f"{RESULTS}/mri/pretrain/{{gmethod}}/model.pt",
    output:
        model=f"{RESULTS}/mri/pretrain/{{gmethod}}+{{lmethod}}/model.pt",
        train=f"{RESULTS}/mri/pretrain/{{gmethod}}+{{lmethod}}/train.json",
    wildcard_constraints:
        gmethod=r"GR|GD-|GD",
        lmethod=r"LR|LD",
    params:
        out=output_dir,
        p=mri_cfg()["pretrain"]["local"],
        seed=mri_cfg()["pretrain"]["seed"],
    threads: config["threads"]
    priority: 4  # the longest jobs first (README "The default experiment"); the pretrained cells wait for it
    resources:
        mem_mb=2000,
    log:
        f"{RESULTS}/logs/mri_pretrain/{{gmethod}}+{{lmethod}}.log",
    benchmark:
        benchmark_file("mri_pretrain_local", "{gmethod}+{lmethod}")
    shell:
        "medseg pretrain --stage local --strategy {wildcards.lmethod:q} --init {input.init:q} "
        "--data {input.data:q} --out {params.out:q} --steps {params.p[steps]:q} "
        "--volumes-per-batch {params.p[volumes_per_batch]:q} --lr {params.p[lr]:q} "
        "--temperature {params.p[temperature]:q} --local-negatives {params.p[negatives]:q} "
        "--noise-std {params.p[noise_std]:q} --seed {params.seed:q} --threads {threads} > {log:q} 2>&1"


# One job trains every seed of a cell (finetune_jobs: cell) or one seed (finetune_jobs: seed).
# Two rules, as for evaluation: the all-labels budget may have its own seeds.
for _rule, _all_labels in (("mri_finetune", False), ("mri_finetune_all_labels", True)):

    rule:
        name:
            _rule
        input:
            data=f"{RESULTS}/mri/prepared",
            init=mri_init_checkpoint,
            weights=encoder_weights_file,
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
            init_method=init_method,
            steps=finetune_steps,
            semi=semi_args,
            weights=encoder_weights_args,
            fixed=mri_labeled_subjects_args,
        threads: config["threads"]
        priority: finetune_priority("mri", _all_labels)
        resources:
            mem_mb=2000,
        log:
            finetune_log(f"{RESULTS}/logs/mri_finetune/{{method}}_budget_{{budget}}"),
        benchmark:
            finetune_benchmark_file(_rule, "{method}_budget_{budget}")
        shell:
            "medseg finetune --data {input.data:q} --out {params.outs:q} --budget {wildcards.budget:q} "
            "--seed {params.seeds:q} --method {params.init_method:q} {params.init:q} --channels {params.channels:q} "
            "--steps {params.steps:q} --batch-size {params.ft[batch_size]:q} --lr {params.ft[lr]:q} "
            "--val-every {params.ft[val_every]:q} {params.fixed:q} {params.semi:q} {params.weights:q} --threads {threads} "
            "> {log:q} 2>&1"


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
        log:
            f"{RESULTS}/logs/mri_evaluate/{{method}}_budget_{{budget}}.log",
        benchmark:
            benchmark_file(_rule, "{method}_budget_{budget}")
        shell:
            "medseg evaluate --data {input.data:q} --model {input.models:q} --out {params.outs:q} "
            "--threads {threads} > {log:q} 2>&1"