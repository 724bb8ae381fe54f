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


def cascade_released(want=True):
    """The cascades that import released weights (`pretrained`), or the others. A released
    cascade was trained on the window's frame: another `cond_frame` is an error."""
    names = []
    for name, entry in cascade_models().items():
        if entry.get("pretrained") and entry.get("cond_frame", "window") != "window":
            raise WorkflowError(
                f"cascade.models.{name} imports released weights (pretrained), which "
                f"EchoDiffusion trained on a random frame of the clip, but sets cond_frame: "
                f"{entry['cond_frame']}. Fix: drop cond_frame (or set it to window), or train "
                f"the cascade instead of importing it."
            )
        if bool(entry.get("pretrained")) == want:
            names.append(name)
    return names


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


def cascade_balancing():
    """`cascade.balancing` when it is switched on (checked), else None."""
    balancing = cascade_config().get("balancing", {})
    if not balancing.get("activate"):
        return None
    model = balancing.get("model")
    if model not in cascade_models():
        raise WorkflowError(
            f"cascade.balancing.model = {model!r} is not a key of cascade.models "
            f"({sorted(cascade_models())}). Fix: name the cascade that generates the "
            f"re-balancing set, or set cascade.balancing.activate: false."
        )
    return balancing


def cascade_sampling(wildcards):
    """The sampling settings of the {mode} wildcard's datasets (the library's fields): the
    evaluation's (`cascade.samples`) or the re-balancing set's (`cascade.balancing`, one
    video per target EF)."""
    if wildcards.mode == "balanced":
        settings = {
            k: v
            for k, v in cascade_balancing().items()
            if k not in ("activate", "model")
        }
        return {**settings, "mode": "balanced", "resamples": 1}
    settings = {
        k: v
        for k, v in cascade_samples().items()
        if k not in ("modes", "real", "metrics", "pad_to")
    }
    return {**settings, "mode": wildcards.mode}


def cascade_datasets():
    """id -> (model, mode) of every cascade dataset: the evaluation's, then the
    re-balancing set."""
    datasets = {
        f"cascade_{model}_{mode}": (model, mode)
        for model in cascade_models()
        for mode in cascade_samples()["modes"]
    }
    balancing = cascade_balancing()
    if balancing:
        datasets[f"cascade_{balancing['model']}_balanced"] = (
            balancing["model"],
            "balanced",
        )
    return datasets


def cascade_regressor():
    """The regressors.runs entry that scores every cascade dataset (`cascade.regressor`)."""
    name = cascade_config().get("regressor")
    if name and name not in config["regressors"]["runs"]:
        raise WorkflowError(
            f"cascade.regressor = {name!r} is not a key of regressors.runs "
            f"({sorted(config['regressors']['runs'])}). Fix: name one (EchoDiffusion: a run "
            f"with preset echodiffusion), or null for no EchoDiffusion table."
        )
    return name


def cascade_score_inputs(wildcards):
    """A dataset's samples, the real manifest, the regressor's predictions on both, and
    LPIPS's trunk weights when metrics.lpips.weights names them."""
    dataset = f"cascade_{wildcards.model}_{wildcards.mode}"
    predictions = f"results/predictions/regressor_{cascade_regressor()}"
    inputs = {
        "filelist": f"results/samples/{dataset}/FileList.csv",
        "videos": f"results/samples/{dataset}/Videos",
        "manifest": cascade_manifest(wildcards),
        "generated": f"{predictions}/{dataset}.csv",
        "real": f"{predictions}/{cascade_config()['dataset']}.csv",
    }
    weights = config["metrics"]["lpips"]["weights"]
    if weights:
        inputs["lpips_weights"] = weights_file(weights)
    return inputs


def cascade_paired_inputs(wildcards):
    """A dataset's samples, the real manifest (its clips are re-derived) and the detectors."""
    dataset = f"cascade_{wildcards.model}_{wildcards.mode}"
    return {
        "filelist": f"results/samples/{dataset}/FileList.csv",
        "videos": f"results/samples/{dataset}/Videos",
        "manifest": cascade_manifest(wildcards),
        **detector_inputs(cascade_samples()["metrics"]),
    }


def cascade_table_inputs(wildcards):
    datasets = [f"cascade_{wildcards.model}_{m}" for m in cascade_samples()["modes"]]
    return {
        "scores": [f"results/metrics/{d}_scores.csv" for d in datasets],
        "generation": [f"results/metrics/{d}_paired_padded.json" for d in datasets],
        "native": [f"results/metrics/{d}_paired.json" for d in datasets],
        "filelists": [f"results/samples/{d}/FileList.csv" for d in datasets],
    }


def cascade_targets():
    """Every cascade artefact: each model's folder (its cascade.json and stages), the
    evaluations of its datasets, and its EchoDiffusion table when a regressor scores it.
    """
    targets = expand(
        "results/models/cascade_{model}/cascade.json", model=cascade_models()
    )
    if cascade_regressor():
        targets += expand("results/metrics/cascade_{model}.txt", model=cascade_models())
        if cascade_balancing():
            model = cascade_balancing()["model"]
            targets.append(f"results/metrics/cascade_{model}_balanced_scores.csv")
    return targets + evaluation_targets(system="cascade")
