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


rule innvestigate_rvfailure:
    """The reference's TF1 guided backpropagation (innvestigate 1.0.8, Keras 2.2.4) of the
    clips explain_rvfailure explained, on the same weights (its Keras export), in its own
    environment: files in, files out."""
    input:
        captum="results/saliency/rvfailure_{model}",
    output:
        maps=directory("results/saliency/rvfailure_{model}_innvestigate"),
    log:
        "logs/innvestigate_rvfailure/{model}.log",
    benchmark:
        "benchmarks/innvestigate_rvfailure/{model}.tsv"
    wildcard_constraints:
        model=names_pattern(rv_models()),
    conda:
        "../envs/innvestigate.yaml"
    threads: 2
    resources:
        mem_mb=tier_mem("cpu_large"),
        runtime=tier_runtime("cpu_large"),
    params:
        python=rv_innvestigate_python,
        script=RV_INNVESTIGATE_SCRIPT,
        start=rv_config()["innvestigate"]["start"],
        missing=RV_INNVESTIGATE_MISSING,
    shell:
        "command -v {params.python:q} > /dev/null || {{ echo {params.missing:q} >&2; exit 1; }}; "
        "{params.python:q} {params.script:q} {input.captum:q} {output.maps:q}"
        " --threads {threads} --start {params.start} > {log:q} 2>&1"


rule rvfailure_saliency_agreement:
    """innvestigate's maps against captum's (within rvfailure.innvestigate.tolerance when
    both start from 1), and their report GIF."""
    input:
        model="results/models/rvfailure_{model}",
        captum="results/saliency/rvfailure_{model}",
        innvestigate="results/saliency/rvfailure_{model}_innvestigate",
    output:
        record="results/metrics/rvfailure_{model}_saliency_agreement.json",
        gif=report(
            "results/report/rvfailure_{model}_saliency_innvestigate.gif",
            category="RV failure",
            caption="../docs/report/rvfailure_saliency.rst",
        ),
    log:
        "logs/rvfailure_saliency_agreement/{model}.log",
    wildcard_constraints:
        model=names_pattern(rv_models()),
    localrule: True
    conda:
        "../envs/echogen.yaml"
    params:
        start=rv_config()["innvestigate"]["start"],
        tolerance=rv_config()["innvestigate"]["tolerance"],
    script:
        "../workflow_scripts/rvfailure_saliency_agreement.py"


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
