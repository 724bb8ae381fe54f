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
