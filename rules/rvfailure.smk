# RV failure after LVAD (rohanshad/postop_rv_failure_echo): grey and optical-flow 3-D ResNet
# streams pretrained on EF (EchoNet-Dynamic), their late fusion trained on the LVAD patients'
# DICOM clips (datasets.rvfailure: resources/rvfailure/), prediction averaged over random
# clips, and the AUC table.


include: "rvfailure_helpers.smk"


rule pretrain_rvfailure_stream:
    """Pretrain one stream (grey or flow) to regress EF; resumable; best VAL loss."""
    input:
        unpack(rv_pretrain_inputs),
    output:
        model=directory("results/models/rvfailure_pretrain_{stream}"),
    log:
        "logs/pretrain_rvfailure_stream/{stream}.log",
    benchmark:
        "benchmarks/pretrain_rvfailure_stream/{stream}.tsv"
    wildcard_constraints:
        stream="grey|flow",
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=rv_config()["gpus"]["train"],
        mem_mb=tier_mem("gpu_train"),
        runtime=tier_runtime("gpu_train"),
    params:
        rvfailure=rv_config(),
        state_dir="results/pretrain_rvfailure_stream/{stream}/state",
        seed=config["seed"],
    script:
        "../workflow_scripts/pretrain_rvfailure_stream.py"


rule train_rvfailure:
    """Train a fusion network on RV failure (severe vs rest); resumable; best VAL AUC."""
    input:
        unpack(rv_train_inputs),
    output:
        model=directory("results/models/rvfailure_{model}"),
    log:
        "logs/train_rvfailure/{model}.log",
    benchmark:
        "benchmarks/train_rvfailure/{model}.tsv"
    wildcard_constraints:
        model=names_pattern(rv_models()),
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=rv_config()["gpus"]["train"],
        mem_mb=tier_mem("gpu_train"),
        runtime=tier_runtime("gpu_train"),
    params:
        rvfailure=rv_config(),
        streams=lambda wildcards: rv_models()[wildcards.model],
        init=lambda wildcards, input: rv_init(input),
        state_dir="results/train_rvfailure/{model}/state",
        seed=config["seed"],
    script:
        "../workflow_scripts/train_rvfailure.py"


rule predict_rvfailure:
    """Every VAL and TEST video's probability: the mean over its random clips."""
    input:
        model="results/models/rvfailure_{model}",
        val=f"{RV_SPLITS}/val.csv",
        test=f"{RV_SPLITS}/test.csv",
    output:
        predictions="results/metrics/rvfailure_{model}_predictions.csv",
    log:
        "logs/predict_rvfailure/{model}.log",
    benchmark:
        "benchmarks/predict_rvfailure/{model}.tsv"
    wildcard_constraints:
        model=names_pattern(rv_models()),
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=rv_config()["gpus"]["infer"],
        mem_mb=tier_mem("gpu_infer"),
        runtime=tier_runtime("gpu_infer"),
    params:
        seed=config["seed"],
    script:
        "../workflow_scripts/predict_rvfailure.py"


rule explain_rvfailure:
    """Guided backpropagation (captum) of TEST clips: their maps, the inputs they explain
    (for the TF1 innvestigate step) and a report GIF."""
    input:
        model="results/models/rvfailure_{model}",
        test=f"{RV_SPLITS}/test.csv",
    output:
        saliency=directory("results/saliency/rvfailure_{model}"),
        gif=report(
            "results/report/rvfailure_{model}_saliency.gif",
            category="RV failure",
            caption="../docs/report/rvfailure_saliency.rst",
        ),
    log:
        "logs/explain_rvfailure/{model}.log",
    benchmark:
        "benchmarks/explain_rvfailure/{model}.tsv"
    wildcard_constraints:
        model=names_pattern(rv_models()),
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=rv_config()["gpus"]["infer"],
        mem_mb=tier_mem("gpu_infer"),
        runtime=tier_runtime("gpu_infer"),
    params:
        videos=rv_config()["explain"]["videos"],
        seed=config["seed"],
    script:
        "../workflow_scripts/explain_rvfailure.py"


rule rvfailure_table:
    """The table: per model, TEST AUC (per patient) with its interval, specificity at the
    configured sensitivity, the confusion matrix at the VAL-chosen threshold."""
    input:
        predictions=expand(
            "results/metrics/rvfailure_{model}_predictions.csv", model=rv_models()
        ),
    output:
        table=report(
            "results/metrics/rvfailure.txt",
            category="Metric tables",
            caption="../docs/report/metric_table.rst",
        ),
        record="results/metrics/rvfailure.json",
    log:
        "logs/rvfailure_table/rvfailure.log",
    localrule: True
    conda:
        "../envs/echogen.yaml"
    params:
        models=list(rv_models()),
        predict=rv_config()["predict"],
        plumbing=rv_plumbing(),
        seed=config["seed"],
    script:
        "../workflow_scripts/rvfailure_table.py"


register_targets("rvfailure", rv_targets())


# RV failure: the stream pretraining, every fusion network, its predictions and the table.
rule rvfailure:
    input:
        rv_targets(),
