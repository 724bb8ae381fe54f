# EF regressors: training, prediction on any set of videos, and the TEST table.


rule regressor_manifest:
    """The rows a run trains and validates on when it pools, balances or subsamples them."""
    input:
        unpack(regressor_sources),
    output:
        manifest="results/train_regressor/{name}/manifest.csv",
    log:
        "logs/regressor_manifest/{name}.log",
    wildcard_constraints:
        name=regressor_pattern(),
    localrule: True
    conda:
        "../envs/echogen.yaml"
    params:
        run=regressor_run,
        seed=config["seed"],
    script:
        "../workflow_scripts/regressor_manifest.py"


rule train_regressor:
    """Train (or load) an EF regressor; resumable state lives in results/train_regressor/<name>/."""
    input:
        unpack(regressor_inputs),
    output:
        model=directory("results/models/regressor_{name}"),
    log:
        "logs/train_regressor/{name}.log",
    benchmark:
        "benchmarks/train_regressor/{name}.tsv"
    wildcard_constraints:
        name=regressor_pattern(),
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=config.get("regressors", {}).get("gpus", 1),
        mem_mb=tier_mem("gpu_train"),
        runtime=tier_runtime("gpu_train"),
    params:
        run=regressor_run,
        state_dir="results/train_regressor/{name}/state",
        seed=config["seed"],
    script:
        "../workflow_scripts/train_regressor.py"


rule predict_ef:
    """Predict EF (one clip and the all-clip average) for a manifest or a folder of videos."""
    input:
        unpack(prediction_inputs),
    output:
        predictions="results/predictions/regressor_{name}/{videos}.csv",
    log:
        "logs/predict_ef/{name}_{videos}.log",
    benchmark:
        "benchmarks/predict_ef/{name}_{videos}.tsv"
    wildcard_constraints:
        name=regressor_pattern(),
        videos=r"[A-Za-z0-9_]+",
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=tier_mem("gpu_infer"),
        runtime=tier_runtime("gpu_infer"),
    script:
        "../workflow_scripts/predict_ef.py"


rule evaluate_regressor:
    """Write the regressor's VAL and TEST tables: MAE, RMSE, R² with bootstrap CIs, vs the train mean."""
    input:
        model="results/models/regressor_{name}",
        predictions=regressor_predictions,
    output:
        table="results/metrics/regressor_{name}.txt",
        record="results/metrics/regressor_{name}.json",
    log:
        "logs/evaluate_regressor/{name}.log",
    wildcard_constraints:
        name=regressor_pattern(),
    localrule: True
    conda:
        "../envs/echogen.yaml"
    threads: 1
    params:
        run=regressor_run,
        n_bootstrap=config["regressors"]["n_bootstrap"],
        seed=config["seed"],
        splits=config["regressors"]["report_splits"],
        ci_level=config["regressors"]["ci_level"],
    script:
        "../workflow_scripts/evaluate_regressor.py"


rule compare_regressors:
    """Every regressor's real-split numbers side by side: real-trained and synthetic-trained."""
    input:
        records=regressor_records,
    output:
        table="results/metrics/regressors.txt",
    log:
        "logs/compare_regressors/regressors.log",
    localrule: True
    conda:
        "../envs/echogen.yaml"
    params:
        runs=config["regressors"]["runs"],
    script:
        "../workflow_scripts/compare_regressors.py"
