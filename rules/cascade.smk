# Cascaded video diffusion (EchoDiffusion): every stage of a cascade trains as its own job, the
# cascade folder references the trained stages.


include: "cascade_helpers.smk"


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
        model=names_pattern(cascade_models()),
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
        model=names_pattern(cascade_models()),
    localrule: True
    conda:
        "../envs/echogen.yaml"
    script:
        "../workflow_scripts/assemble_cascade.py"


register_targets("cascade", cascade_targets())


# Cascaded video diffusion: every configured cascade, its stages trained.
rule cascade:
    input:
        cascade_targets(),
