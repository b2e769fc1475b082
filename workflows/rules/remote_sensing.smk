# Remote-sensing rules: each calls one `rs <stage>` with explicit inputs and outputs.


wildcard_constraints:
    fusion=r"early|dual",
    pct=r"[0-9]+(\.[0-9]+)?",


rule rs_demo_data:
    output:
        directory(f"{RESULTS}/rs/raw"),
    params:
        d=rs_cfg()["demo"],
    log:
        f"{RESULTS}/logs/rs_demo_data.log",
    shell:
        "rs demo-data --out {output:q} --n-scenes {params.d[n_scenes]:q} --size {params.d[size]:q} "
        "--seed {params.d[seed]:q} > {log:q} 2>&1"


rule rs_preprocess:
    input:
        rs_raw_input(),
    output:
        directory(f"{RESULTS}/rs/prepared"),
    params:
        p=rs_cfg()["preprocess"],
    log:
        f"{RESULTS}/logs/rs_preprocess.log",
    benchmark:
        benchmark_file("rs_preprocess", "rs_preprocess")
    shell:
        "rs preprocess --input {input:q} --out {output:q} --tile {params.p[tile]:q} --overlap {params.p[overlap]:q} "
        "--block-tiles {params.p[block_tiles]:q} --val-fraction {params.p[val_fraction]:q} "
        "--test-fraction {params.p[test_fraction]:q} --seed {params.p[seed]:q} > {log:q} 2>&1"


rule rs_pretrain:
    input:
        data=f"{RESULTS}/rs/prepared",
    output:
        model=f"{RESULTS}/rs/pretrain/hpcl-ssl/{{fusion}}/model.pt",
        train=f"{RESULTS}/rs/pretrain/hpcl-ssl/{{fusion}}/train.json",
    params:
        out=output_dir,
        p=rs_cfg()["pretrain"],
        net=rs_cfg()["network"],
        decoder=comma_list(rs_cfg()["network"]["decoder_channels"]),
        crop=str_list(rs_cfg()["pretrain"]["crop_scale"]),
    threads: config["threads"]
    priority: 4  # the longest jobs first (README "The default experiment"); the pretrained cells wait for it
    resources:
        mem_mb=3000,
    log:
        f"{RESULTS}/logs/rs_pretrain/hpcl-ssl_{{fusion}}.log",
    benchmark:
        benchmark_file("rs_pretrain", "hpcl-ssl_{fusion}")
    shell:
        "rs pretrain --method hpcl --data {input.data:q} --out {params.out:q} --fusion {wildcards.fusion:q} "
        "--encoder {params.net[encoder]:q} --encoder-depth {params.net[encoder_depth]:q} "
        "--decoder-channels {params.decoder:q} --steps {params.p[steps]:q} --batch-size {params.p[batch_size]:q} "
        "--lr {params.p[lr]:q} --queue-size {params.p[queue_size]:q} --momentum {params.p[momentum]:q} "
        "--temperature {params.p[temperature]:q} --crop-scale {params.crop:q} --seed {params.p[seed]:q} "
        "--threads {threads} > {log:q} 2>&1"


rule rs_pretrain_baseline:
    input:
        data=f"{RESULTS}/rs/prepared",
    output:
        model=f"{RESULTS}/rs/pretrain/{{bmethod}}/{{fusion}}/model.pt",
        train=f"{RESULTS}/rs/pretrain/{{bmethod}}/{{fusion}}/train.json",
    wildcard_constraints:
        bmethod=r"mocov2|byol|densecl|detcon",
    params:
        out=output_dir,
        args=rs_baseline_args,
        net=rs_cfg()["network"],
        decoder=comma_list(rs_cfg()["network"]["decoder_channels"]),
        seed=rs_cfg()["pretrain"]["seed"],
    threads: config["threads"]
    priority: 4  # the longest jobs first (README "The default experiment"); the pretrained cells wait for it
    resources:
        mem_mb=3000,
    log:
        f"{RESULTS}/logs/rs_pretrain/{{bmethod}}_{{fusion}}.log",
    benchmark:
        benchmark_file("rs_pretrain_baseline", "{bmethod}_{fusion}")
    shell:
        "rs pretrain --method {wildcards.bmethod:q} --data {input.data:q} --out {params.out:q} "
        "--fusion {wildcards.fusion:q} --encoder {params.net[encoder]:q} --encoder-depth {params.net[encoder_depth]:q} "
        "--decoder-channels {params.decoder:q} {params.args:q} --seed {params.seed:q} --threads {threads} > {log:q} 2>&1"


# One job trains every seed of a cell (finetune_jobs: cell) or one seed (finetune_jobs: seed), as mri_finetune.
for _rule, _all_labels in (("rs_finetune", False), ("rs_finetune_all_labels", True)):

    rule:
        name:
            _rule
        input:
            data=f"{RESULTS}/rs/prepared",
            init=rs_init_checkpoint,
            weights=encoder_weights_file,
        output:
            model=finetune_outputs(f"{RESULTS}/rs/finetune/{{method}}/{{fusion}}/pct_{{pct}}", rs_cfg(), _all_labels, "model.pt"),
            train=finetune_outputs(f"{RESULTS}/rs/finetune/{{method}}/{{fusion}}/pct_{{pct}}", rs_cfg(), _all_labels, "train.json"),
        wildcard_constraints:
            pct=budget_regex(rs_cfg(), _all_labels),
        params:
            init=init_args,
            ft=rs_cfg()["finetune"],
            net=rs_cfg()["network"],
            decoder=comma_list(rs_cfg()["network"]["decoder_channels"]),
            extra=rs_finetune_extra_args,
            seeds=job_seeds,
            outs=model_dirs,
            init_method=init_method,
            steps=finetune_steps,
            semi=semi_args,
            weights=encoder_weights_args,
        threads: config["threads"]
        priority: finetune_priority("rs", _all_labels)
        resources:
            mem_mb=3000,
        log:
            finetune_log(f"{RESULTS}/logs/rs_finetune/{{method}}_{{fusion}}_pct_{{pct}}"),
        benchmark:
            finetune_benchmark_file(_rule, "{method}_{fusion}_pct_{pct}")
        shell:
            "rs finetune --data {input.data:q} --out {params.outs:q} --percent {wildcards.pct:q} "
            "--seed {params.seeds:q} --method {params.init_method:q} --fusion {wildcards.fusion:q} {params.init:q} "
            "--encoder {params.net[encoder]:q} --encoder-depth {params.net[encoder_depth]:q} "
            "--decoder-channels {params.decoder:q} --steps {params.steps:q} --batch-size {params.ft[batch_size]:q} "
            "--lr {params.ft[lr]:q} --val-every {params.ft[val_every]:q} {params.extra:q} {params.semi:q} {params.weights:q} "
            "--threads {threads} > {log:q} 2>&1"


# One job scores every seed of a cell (method, fusion, percentage), as mri_evaluate.
for _rule, _all_labels in (("rs_evaluate", False), ("rs_evaluate_all_labels", True)):

    rule:
        name:
            _rule
        input:
            data=f"{RESULTS}/rs/prepared",
            models=rs_cell_models,
        output:
            rs_cell_metrics(_all_labels),
        wildcard_constraints:
            pct=budget_regex(rs_cfg(), _all_labels),
        params:
            outs=output_dirs,
        threads: config["threads"]
        log:
            f"{RESULTS}/logs/rs_evaluate/{{method}}_{{fusion}}_pct_{{pct}}.log",
        benchmark:
            benchmark_file(_rule, "{method}_{fusion}_pct_{pct}")
        shell:
            "rs evaluate --data {input.data:q} --model {input.models:q} --out {params.outs:q} "
            "--threads {threads} > {log:q} 2>&1"


rule rs_predict_scene:
    input:
        data=f"{RESULTS}/rs/prepared",
        raw=rs_raw_input(),
        model=rs_showcase_model(),
    output:
        f"{RESULTS}/rs/predict/{rs_showcase_scene()}_image_prediction.tif",
    params:
        image=rs_showcase_image,
        dem=rs_showcase_dem,
        out=output_dir,
    threads: config["threads"]
    log:
        f"{RESULTS}/logs/rs_predict.log",
    shell:
        "rs predict --image {params.image:q} --dem {params.dem:q} --model {input.model:q} --data {input.data:q} "
        "--out {params.out:q} --threads {threads} > {log:q} 2>&1"
