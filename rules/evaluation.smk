# Evaluation keyed on synthetic-dataset ids, whatever system made them. Systems register
# their datasets with register_synthetic_dataset (rules/common.smk, with the input functions
# used here); the rules here never name a system.


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
