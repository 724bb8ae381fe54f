# D'ARTAGNAN (counterfactual video generation): the twin-network generator trains against a
# frozen EF expert (a regressors.runs entry) on the processed 64-frame clips; its
# counterfactuals of the VAL/TEST clips are a synthetic dataset of the shared evaluation,
# scored against their factual clips; inference makes the counterfactuals of configured
# (video, EF) pairs.


include: "dartagnan_helpers.smk"


# Sampling jobs per synthetic dataset (override: --set-scatter dartagnan_shard=N).
scattergather:
    dartagnan_shard=dartagnan_config()["shards"],


for _dataset, _model in dartagnan_datasets().items():
    register_synthetic_dataset(
        _dataset,
        "dartagnan",
        real=dartagnan_config()["samples"]["real"],
        metrics=dartagnan_config()["samples"]["metrics"],
        shards="dartagnan_shard",
        tiny=dartagnan_tiny(_model),
    )


rule train_dartagnan:
    """Train D'ARTAGNAN's generator and discriminator against the frozen expert; resumable."""
    input:
        metainfo=dartagnan_metainfo,
        expert=f"results/models/regressor_{dartagnan_run('expert')}",
    output:
        model=directory("results/models/dartagnan_{model}"),
    log:
        "logs/train_dartagnan/{model}.log",
    benchmark:
        "benchmarks/train_dartagnan/{model}.tsv"
    wildcard_constraints:
        model=names_pattern(dartagnan_models()),
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=dartagnan_config()["gpus"]["train"],
        mem_mb=tier_mem("gpu_train"),
        runtime=tier_runtime("gpu_train"),
    params:
        model=dartagnan_model,
        state_dir="results/train_dartagnan/{model}/state",
        seed=config["seed"],
    script:
        "../workflow_scripts/train_dartagnan.py"


rule sample_dartagnan:
    """Generate one shard of a model's counterfactuals of the VAL/TEST clips."""
    input:
        model="results/models/dartagnan_{model}",
        metainfo=dartagnan_metainfo,
    output:
        shard=directory(
            "results/sample_shards/dartagnan_{model}_counterfactual/{scatteritem}"
        ),
    log:
        "logs/sample_dartagnan/{model}_{scatteritem}.log",
    benchmark:
        "benchmarks/sample_dartagnan/{model}_{scatteritem}.tsv"
    wildcard_constraints:
        model=names_pattern(dartagnan_models()),
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=dartagnan_config()["gpus"]["infer"],
        mem_mb=tier_mem("gpu_infer"),
        runtime=tier_runtime("gpu_infer"),
    params:
        sampling=dartagnan_sampling(),
        seed=config["seed"],
    script:
        "../workflow_scripts/sample_dartagnan.py"


rule score_dartagnan:
    """Score every counterfactual: both regressors' EF, SSIM and LPIPS to its factual clip."""
    input:
        unpack(dartagnan_score_inputs),
    output:
        scores="results/metrics/dartagnan_{model}_counterfactual_scores.csv",
    log:
        "logs/score_dartagnan/{model}.log",
    benchmark:
        "benchmarks/score_dartagnan/{model}.tsv"
    wildcard_constraints:
        model=names_pattern(dartagnan_models()),
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=dartagnan_config()["gpus"]["infer"],
        mem_mb=tier_mem("gpu_infer"),
        runtime=tier_runtime("gpu_infer"),
    params:
        lpips_net=config["metrics"]["lpips"]["net"],
        size=dartagnan_config()["samples"]["score_size"],
    script:
        "../workflow_scripts/score_dartagnan.py"


rule dartagnan_table:
    """D'ARTAGNAN's table: EF control (independent regressor and expert), SSIM, LPIPS, FID, FVD."""
    input:
        unpack(dartagnan_table_inputs),
    output:
        table=report(
            "results/metrics/dartagnan.txt",
            category="Metric tables",
            caption="../docs/report/metric_table.rst",
        ),
        record="results/metrics/dartagnan.json",
    log:
        "logs/dartagnan_table/dartagnan.log",
    localrule: True
    conda:
        "../envs/echogen.yaml"
    params:
        models=list(dartagnan_models()),
        plumbing=[dartagnan_tiny(m) for m in dartagnan_models()],
        regressor=dartagnan_run("regressor"),
        expert=dartagnan_run("expert"),
    script:
        "../workflow_scripts/dartagnan_table.py"


rule infer_dartagnan:
    """Counterfactuals of the configured (video, EF) pairs: MP4s, frames and a FileList."""
    input:
        unpack(dartagnan_inference_inputs),
    output:
        filelist="results/counterfactuals/dartagnan_{model}/FileList.csv",
        videos=directory("results/counterfactuals/dartagnan_{model}/Videos"),
        frames=directory("results/counterfactuals/dartagnan_{model}/frames"),
    log:
        "logs/infer_dartagnan/{model}.log",
    benchmark:
        "benchmarks/infer_dartagnan/{model}.tsv"
    wildcard_constraints:
        model=names_pattern(dartagnan_models()),
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=dartagnan_config()["gpus"]["infer"],
        mem_mb=tier_mem("gpu_infer"),
        runtime=tier_runtime("gpu_infer"),
    params:
        pairs=dartagnan_config().get("inference", {}).get("items", []),
        dataset=dartagnan_config()["dataset"],
        seed=config["seed"],
    script:
        "../workflow_scripts/infer_dartagnan.py"


register_targets("dartagnan", dartagnan_targets())


# D'ARTAGNAN: every configured model, the evaluation of its counterfactuals, its table and
# the inference items.
rule dartagnan:
    input:
        dartagnan_targets(),
