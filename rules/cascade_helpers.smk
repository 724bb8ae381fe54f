# Helpers of the cascaded video diffusion line (rules/cascade.smk includes this file; snakemake
# --lint wants functions and rules in separate files). Read only when cascade is active.

# Stages of each published structure (echogen.models.cascade.CASCADE_PRESETS; a unit test
# keeps the two equal). The workflow plans one training job per stage without importing the
# library.
CASCADE_STAGES = {"1SCM": 1, "2SCM": 2, "4SCM": 4}


def cascade_config():
    return config["cascade"]


def cascade_models():
    return cascade_config()["models"]


def cascade_model(wildcards):
    return cascade_models()[wildcards.model]


def cascade_stage_count(model):
    return CASCADE_STAGES[cascade_models()[model]["structure"]]


def cascade_manifest(wildcards):
    """The manifest whose TRAIN videos train every stage (`cascade.dataset`)."""
    return f"resources/manifests/{cascade_config()['dataset']}.csv"


def cascade_stage_dirs(wildcards):
    """The stage folders of the {model} wildcard, in cascade order."""
    stages = range(1, cascade_stage_count(wildcards.model) + 1)
    return expand(
        "results/models/cascade_{model}/stage_{stage}",
        model=wildcards.model,
        stage=stages,
    )


def cascade_stage_check(wildcards):
    """The stage wildcard is one of the cascade's (an error naming both otherwise)."""
    stages = cascade_stage_count(wildcards.model)
    if not 1 <= int(wildcards.stage) <= stages:
        raise WorkflowError(
            f"cascade {wildcards.model} has stages 1..{stages}, not {wildcards.stage}"
        )
    return cascade_model(wildcards)


def cascade_samples():
    return cascade_config()["samples"]


def cascade_sampling(wildcards):
    """The sampling settings of the {mode} wildcard's datasets (the library's fields)."""
    settings = {
        k: v
        for k, v in cascade_samples().items()
        if k not in ("modes", "real", "metrics")
    }
    return {**settings, "mode": wildcards.mode}


def cascade_datasets():
    """id -> (model, mode) of every cascade evaluation dataset."""
    return {
        f"cascade_{model}_{mode}": (model, mode)
        for model in cascade_models()
        for mode in cascade_samples()["modes"]
    }


def cascade_targets():
    """Every cascade artefact: each model's folder (its cascade.json and stages) and the
    evaluations of its datasets."""
    targets = expand(
        "results/models/cascade_{model}/cascade.json", model=cascade_models()
    )
    return targets + evaluation_targets(system="cascade")
