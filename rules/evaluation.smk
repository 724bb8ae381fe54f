# Evaluation keyed on synthetic-dataset ids, whatever system made them. Systems register
# their datasets with register_synthetic_dataset (rules/common.smk); the `evaluation:` config
# section names the ids that get EF fidelity and downstream classification. The rules here
# never name a system; their input functions are in rules/evaluation_helpers.smk.


include: "evaluation_helpers.smk"


check_evaluation_datasets()


rule summarize_datasets:
    """One row per synthetic dataset: generation metrics, EF fidelity, sampling cost."""
    input:
        unpack(summary_inputs),
    output:
        table="results/metrics/summary.txt",
        record="results/metrics/summary.json",
    log:
        "logs/summarize_datasets/summary.log",
    localrule: True
    conda:
        "../envs/echogen.yaml"
    params:
        datasets=summary_datasets(),
    script:
        "../workflow_scripts/summarize_datasets.py"


rule ef_fidelity:
    """EF of generated videos as the regressor sees it vs the EF they were asked for."""
    input:
        unpack(ef_fidelity_inputs),
    output:
        table="results/metrics/ef_fidelity_{dataset}.txt",
        record="results/metrics/ef_fidelity_{dataset}.json",
        per_video="results/metrics/ef_fidelity_{dataset}.csv",
    log:
        "logs/ef_fidelity/{dataset}.log",
    wildcard_constraints:
        dataset=synthetic_pattern(with_ef=True),
    localrule: True
    conda:
        "../envs/echogen.yaml"
    params:
        n_bootstrap=config["regressors"]["n_bootstrap"],
        seed=config["seed"],
        plumbing=ef_fidelity_plumbing,
    script:
        "../workflow_scripts/ef_fidelity.py"


rule report_strip:
    """GIF strip of real (top) vs generated (bottom) videos for the report."""
    input:
        real=synthetic_real,
        fake="results/samples/{dataset}/frames",
    output:
        gif=report(
            "results/report/{dataset}_strip.gif",
            category="Generated videos",
            caption="../docs/report/strip.rst",
        ),
    log:
        "logs/report_strip/{dataset}.log",
    wildcard_constraints:
        dataset=synthetic_pattern(),
    localrule: True
    conda:
        "../envs/echogen.yaml"
    script:
        "../workflow_scripts/report_strip.py"


rule report_ef_scatter:
    """Requested vs regressed EF scatter of a synthetic dataset for the report."""
    input:
        per_video="results/metrics/ef_fidelity_{dataset}.csv",
    output:
        png=report(
            "results/report/ef_fidelity_{dataset}.png",
            category="EF fidelity",
            caption="../docs/report/ef_scatter.rst",
        ),
    log:
        "logs/report_ef_scatter/{dataset}.log",
    wildcard_constraints:
        dataset=synthetic_pattern(with_ef=True),
    localrule: True
    conda:
        "../envs/echogen.yaml"
    script:
        "../workflow_scripts/report_ef_scatter.py"


rule train_classifier:
    """Train a CardiacNet video classifier of one task (a set of classes) on real, synthetic or
    real+synthetic videos (the synthetic videos: the dataset named by
    evaluation.classification.dataset)."""
    input:
        unpack(classifier_inputs),
    output:
        model=directory("results/models/classifier_cardiacnet_{task}_{source}"),
    log:
        "logs/train_classifier/{task}_{source}.log",
    benchmark:
        "benchmarks/train_classifier/{task}_{source}.tsv"
    wildcard_constraints:
        task=r"[a-z0-9]+",
        source=r"real|synthetic|real\+synthetic",
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=classification_config().get("gpus", 1),
        mem_mb=tier_mem("gpu_train"),
        runtime=tier_runtime("gpu_train"),
    params:
        classification=classification_config(),
        classes=classifier_task_classes,
        class_map=config["datasets"]["cardiacnet"].get("class_map", {}),
        state_dir="results/train_classifier/{task}_{source}/state",
        seed=config["seed"],
    script:
        "../workflow_scripts/train_classifier.py"


use rule train_classifier as train_classifier_fold with:
    """One fold's classifier of a cross-validation (evaluation.classification.cv_folds):
    EchoDream's k-fold protocol over the source's TRAIN+VAL videos (TRAIN alone when the real
    VAL videos select: validation real)."""
    output:
        model=directory(
            "results/models/classifier_cardiacnet_{task}_{source}_fold{fold}"
        ),
    log:
        "logs/train_classifier_fold/{task}_{source}_fold{fold}.log",
    benchmark:
        "benchmarks/train_classifier_fold/{task}_{source}_fold{fold}.tsv"
    wildcard_constraints:
        task=r"[a-z0-9]+",
        source=r"real|synthetic|real\+synthetic",
        fold=r"[0-9]+",
    params:
        state_dir="results/train_classifier/{task}_{source}_fold{fold}/state",


rule predict_classifier:
    """Class probabilities of the TEST videos of a task's classes (all clips averaged), of
    every set in evaluation.classification.test_sets (real CardiacNet; synthetic)."""
    input:
        unpack(predict_classifier_inputs),
    output:
        predictions="results/predictions/classifier_cardiacnet/{run}.csv",
    log:
        "logs/predict_classifier/{run}.log",
    wildcard_constraints:
        run=r"[a-z0-9]+_(real|synthetic|real\+synthetic)(_fold[0-9]+)?",
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=tier_mem("gpu_infer"),
        runtime=tier_runtime("gpu_infer"),
    params:
        test_sets=classification_config().get("test_sets", ["real"]),
    script:
        "../workflow_scripts/predict_classifier.py"


rule classification_table:
    """CardiacNet TEST accuracy, balanced accuracy and AUC per task and training source, with
    CIs."""
    input:
        predictions=classifier_predictions,
    output:
        table="results/metrics/classification_cardiacnet.txt",
        record="results/metrics/classification_cardiacnet.json",
    log:
        "logs/classification_table/cardiacnet.log",
    localrule: True
    conda:
        "../envs/echogen.yaml"
    params:
        tasks=classifier_class_names(),
        sources=classification_config().get("sources", []),
        folds=classification_config().get("cv_folds"),
        pretrained=classification_config().get("pretrained"),
        plumbing=classification_plumbing(),
        n_bootstrap=classification_config().get("n_bootstrap", 1000),
        seed=config["seed"],
    script:
        "../workflow_scripts/classification_table.py"
