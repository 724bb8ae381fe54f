# Cascaded video diffusion (EchoDiffusion): every stage of a cascade trains as its own job, the
# cascade folder references the trained stages, sharded sampling makes its factual and
# counterfactual videos of real VAL videos, and the EF re-balancing set of TRAIN anatomies
# (cascade.balancing) that EF regressors train on (regressors.runs.<name>.with_real).


include: "cascade_helpers.smk"


# Sampling jobs per synthetic dataset (override: --set-scatter cascade_shard=N).
scattergather:
    cascade_shard=cascade_config()["shards"],


# Each cascade's factual and counterfactual videos are synthetic datasets of the shared
# evaluation (rules/evaluation.smk, rules/metrics.smk): generation metrics, a report strip,
# EF fidelity where `evaluation.ef_fidelity.datasets` names them, the summary row.
for _dataset, (_model, _mode) in cascade_datasets().items():
    register_synthetic_dataset(
        _dataset,
        "cascade",
        real=cascade_samples()["real"],
        metrics=cascade_samples()["metrics"],
        shards="cascade_shard",
        tiny=cascade_models()[_model].get("preset") == "tiny",
    )


rule train_cascade_stage:
    """Train one stage of a cascade on the dataset's TRAIN clips (EDM loss, EMA); resumable."""
    input:
        manifest=cascade_manifest,
    output:
        stage=directory("results/models/cascade_{model}/stage_{stage}"),
    log:
        "logs/train_cascade_stage/{model}_stage_{stage}.log",
    benchmark:
        "benchmarks/train_cascade_stage/{model}_stage_{stage}.tsv"
    wildcard_constraints:
        model=names_pattern(cascade_released(want=False)),
        stage=r"\d+",
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=cascade_config()["gpus"]["train"],
        mem_mb=tier_mem("gpu_train"),
        runtime=tier_runtime("gpu_train"),
    params:
        model=cascade_stage_check,
        state_dir="results/train_cascade/{model}/stage_{stage}/state",
        seed=config["seed"],
    script:
        "../workflow_scripts/train_cascade_stage.py"


rule assemble_cascade:
    """A cascade folder: cascade.json referencing its trained stage folders (nothing merged)."""
    input:
        stages=cascade_stage_dirs,
    output:
        index="results/models/cascade_{model}/cascade.json",
    log:
        "logs/assemble_cascade/{model}.log",
    wildcard_constraints:
        model=names_pattern(cascade_released(want=False)),
    localrule: True
    conda:
        "../envs/echogen.yaml"
    script:
        "../workflow_scripts/assemble_cascade.py"


rule import_cascade:
    """A cascade folder from released EchoDiffusion weights (cascade.models.<m>.pretrained)."""
    input:
        config=lambda wildcards: f"{cascade_model(wildcards)['pretrained']}/config.yaml",
        weights=lambda wildcards: f"{cascade_model(wildcards)['pretrained']}/merged.pt",
    output:
        index="results/models/cascade_{model}/cascade.json",
        stages=directory("results/models/cascade_{model}/released"),
    log:
        "logs/import_cascade/{model}.log",
    wildcard_constraints:
        model=names_pattern(cascade_released()),
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        # merged.pt holds every stage's online and EMA weights and trainer state: GBs.
        mem_mb=tier_mem("gpu_infer"),
        runtime=tier_runtime("cpu_small"),
    params:
        stages=lambda wildcards: cascade_stage_count(wildcards.model),
    script:
        "../workflow_scripts/import_cascade.py"


rule sample_cascade:
    """Generate one shard of a cascade's factual or counterfactual videos of real videos."""
    input:
        cascade="results/models/cascade_{model}/cascade.json",
        manifest=cascade_manifest,
    output:
        shard=directory("results/sample_shards/cascade_{model}_{mode}/{scatteritem}"),
    log:
        "logs/sample_cascade/{model}_{mode}_{scatteritem}.log",
    benchmark:
        "benchmarks/sample_cascade/{model}_{mode}_{scatteritem}.tsv"
    wildcard_constraints:
        model=names_pattern(cascade_models()),
        mode="factual|counterfactual|balanced",
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=cascade_config()["gpus"]["infer"],
        mem_mb=tier_mem("gpu_infer"),
        runtime=tier_runtime("gpu_infer"),
    params:
        sampling=cascade_sampling,
        seed=config["seed"],
    script:
        "../workflow_scripts/sample_cascade.py"


rule score_cascade:
    """Score every sample of a cascade dataset: regressed EF, SSIM and LPIPS to its real clip
    (for the re-balancing set, its report: video, anatomy, target EF, regressed EF)."""
    input:
        unpack(cascade_score_inputs),
    output:
        scores="results/metrics/cascade_{model}_{mode}_scores.csv",
    log:
        "logs/score_cascade/{model}_{mode}.log",
    benchmark:
        "benchmarks/score_cascade/{model}_{mode}.tsv"
    wildcard_constraints:
        model=names_pattern(cascade_models()),
        mode="factual|counterfactual|balanced",
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=cascade_config()["gpus"]["infer"],
        mem_mb=tier_mem("gpu_infer"),
        runtime=tier_runtime("gpu_infer"),
    params:
        lpips_net=config["metrics"]["lpips"]["net"],
    script:
        "../workflow_scripts/score_cascade.py"


rule cascade_paired_metrics:
    """FID and FVD16 of each video's first draw against the real clip it was conditioned on,
    at 112 px and padded (EchoDiffusion: 112 px centred on a black 128 square)."""
    input:
        unpack(cascade_paired_inputs),
    output:
        frames=directory("results/paired_frames/cascade_{model}_{mode}"),
        table="results/metrics/cascade_{model}_{mode}_paired.txt",
        record="results/metrics/cascade_{model}_{mode}_paired.json",
        padded_table="results/metrics/cascade_{model}_{mode}_paired_padded.txt",
        padded_record="results/metrics/cascade_{model}_{mode}_paired_padded.json",
    log:
        "logs/cascade_paired_metrics/{model}_{mode}.log",
    benchmark:
        "benchmarks/cascade_paired_metrics/{model}_{mode}.tsv"
    wildcard_constraints:
        model=names_pattern(cascade_models()),
        mode="factual|counterfactual",
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=tier_mem("gpu_infer"),
        runtime=tier_runtime("gpu_infer"),
    params:
        metrics=cascade_samples()["metrics"],
        pad_to=cascade_samples().get("pad_to", 128),
        detectors=detector_params(),
        batch_size=config["metrics"]["batch_size"],
        cache_dir="resources/metric_cache" if config["metrics"]["cache"] else None,
        seed=config["seed"],
    script:
        "../workflow_scripts/cascade_paired_metrics.py"


rule cascade_table:
    """EchoDiffusion's table of a cascade: every task, mean and best of N, FID, FVD, s/video."""
    input:
        unpack(cascade_table_inputs),
    output:
        table=report(
            "results/metrics/cascade_{model}.txt",
            category="Metric tables",
            caption="../docs/report/metric_table.rst",
        ),
        record="results/metrics/cascade_{model}.json",
    log:
        "logs/cascade_table/{model}.log",
    wildcard_constraints:
        model=names_pattern(cascade_models()),
    localrule: True
    conda:
        "../envs/echogen.yaml"
    params:
        modes=cascade_samples()["modes"],
        tiny=lambda wildcards: cascade_model(wildcards).get("preset") == "tiny",
        regressor=cascade_regressor(),
    script:
        "../workflow_scripts/cascade_table.py"


register_targets("cascade", cascade_targets())


# Cascaded video diffusion: every configured cascade, its stages trained, its evaluation
# datasets and their tables.
rule cascade:
    input:
        cascade_targets(),
