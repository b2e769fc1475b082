# Remote-sensing rules: each calls one `rs <stage>` with explicit inputs and outputs.


wildcard_constraints:
    fusion=r"early|dual",
    pct=r"[0-9]+(\.[0-9]+)?",


rule rs_demo_data:
    output:
        directory(f"{RESULTS}/rs/raw"),
    params:
        d=rs_cfg()["demo"],
    conda:
        "../envs/segpretrain.yaml"
    log:
        f"{RESULTS}/logs/rs_demo_data.log",
    shell:
        "rs demo-data --out {output} --n-scenes {params.d[n_scenes]} --size {params.d[size]} "
        "--seed {params.d[seed]} > {log} 2>&1"


rule rs_preprocess:
    input:
        rs_raw_input(),
    output:
        directory(f"{RESULTS}/rs/prepared"),
    params:
        p=rs_cfg()["preprocess"],
    conda:
        "../envs/segpretrain.yaml"
    log:
        f"{RESULTS}/logs/rs_preprocess.log",
    shell:
        "rs preprocess --input {input} --out {output} --tile {params.p[tile]} --overlap {params.p[overlap]} "
        "--block-tiles {params.p[block_tiles]} --val-fraction {params.p[val_fraction]} "
        "--test-fraction {params.p[test_fraction]} --seed {params.p[seed]} > {log} 2>&1"


rule rs_pretrain:
    input:
        data=f"{RESULTS}/rs/prepared",
    output:
        model=f"{RESULTS}/rs/pretrain/hpcl-ssl/{{fusion}}/model.pt",
    params:
        p=rs_cfg()["pretrain"],
        net=rs_cfg()["network"],
        decoder=comma_list(rs_cfg()["network"]["decoder_channels"]),
        crop=space_list(rs_cfg()["pretrain"]["crop_scale"]),
    threads: config["threads"]
    priority: 4  # the longest jobs first (README "The default experiment"); the pretrained cells wait for it
    resources:
        mem_mb=3000,
    conda:
        "../envs/segpretrain.yaml"
    log:
        f"{RESULTS}/logs/rs_pretrain/hpcl-ssl_{{fusion}}.log",
    shell:
        "rs pretrain --method hpcl --data {input.data} --out $(dirname {output.model}) --fusion {wildcards.fusion} "
        "--encoder {params.net[encoder]} --encoder-depth {params.net[encoder_depth]} "
        "--decoder-channels {params.decoder} --steps {params.p[steps]} --batch-size {params.p[batch_size]} "
        "--lr {params.p[lr]} --queue-size {params.p[queue_size]} --momentum {params.p[momentum]} "
        "--temperature {params.p[temperature]} --crop-scale {params.crop} --seed {params.p[seed]} "
        "--threads {threads} > {log} 2>&1"


# One job trains every seed of a cell (finetune_jobs: cell) or one seed (finetune_jobs: seed), as mri_finetune.
for _rule, _all_labels in (("rs_finetune", False), ("rs_finetune_all_labels", True)):

    rule:
        name:
            _rule
        input:
            data=f"{RESULTS}/rs/prepared",
            init=rs_init_checkpoint,
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
        threads: config["threads"]
        priority: finetune_priority("rs", _all_labels)
        resources:
            mem_mb=3000,
        conda:
            "../envs/segpretrain.yaml"
        log:
            finetune_log(f"{RESULTS}/logs/rs_finetune/{{method}}_{{fusion}}_pct_{{pct}}"),
        shell:
            "rs finetune --data {input.data} --out {params.outs} --percent {wildcards.pct} "
            "--seed {params.seeds} --method {wildcards.method} --fusion {wildcards.fusion} {params.init} "
            "--encoder {params.net[encoder]} --encoder-depth {params.net[encoder_depth]} "
            "--decoder-channels {params.decoder} --steps {params.ft[steps]} --batch-size {params.ft[batch_size]} "
            "--lr {params.ft[lr]} --val-every {params.ft[val_every]} {params.extra} --threads {threads} > {log} 2>&1"


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
        conda:
            "../envs/segpretrain.yaml"
        log:
            f"{RESULTS}/logs/rs_evaluate/{{method}}_{{fusion}}_pct_{{pct}}.log",
        shell:
            "rs evaluate --data {input.data} --model {input.models} --out {params.outs} "
            "--threads {threads} > {log} 2>&1"


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
    threads: config["threads"]
    conda:
        "../envs/segpretrain.yaml"
    log:
        f"{RESULTS}/logs/rs_predict.log",
    shell:
        "rs predict --image {params.image} --dem {params.dem} --model {input.model} --data {input.data} "
        "--out $(dirname {output}) --threads {threads} > {log} 2>&1"
