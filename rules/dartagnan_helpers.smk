# Helpers of the D'ARTAGNAN line (rules/dartagnan.smk includes this file; snakemake --lint
# wants functions and rules in separate files). Read only when dartagnan is active.

# Snakemake fills schema defaults only outside $ref'd fragments: validate the section against
# its own fragment so that its defaults (gpus, shards, samples ...) are filled in too.
validate(config["dartagnan"], "../config/schemas/dartagnan.schema.yaml")


def dartagnan_config():
    return config["dartagnan"]


def dartagnan_models():
    return dartagnan_config()["models"]


def dartagnan_sampling():
    """`dartagnan.samples` without the keys only scoring and the generation metrics read, so
    that changing them re-scores the counterfactuals without sampling them again."""
    scoring = ("real", "metrics", "score_size")
    return {k: v for k, v in dartagnan_config()["samples"].items() if k not in scoring}


def dartagnan_model(wildcards):
    return dartagnan_models()[wildcards.model]


def dartagnan_metainfo(wildcards=None):
    """The processed clips (`dartagnan.dataset`, from derived.dartagnan_clips)."""
    dataset = dartagnan_config()["dataset"]
    clips = config["derived"]["dartagnan_clips"]
    if not is_activated("derived/dartagnan_clips") or dataset not in clips["datasets"]:
        raise WorkflowError(
            f"dartagnan.dataset = {dataset!r} has no D'ARTAGNAN clips. Fix: activate "
            f"derived.dartagnan_clips and list {dataset!r} in its datasets."
        )
    return f"resources/dartagnan/{dataset}/metainfo.csv"


def dartagnan_run(key):
    """The regressors.runs entry named by `dartagnan.<key>` (expert or regressor), checked."""
    name = dartagnan_config()[key]
    if name not in config["regressors"]["runs"]:
        raise WorkflowError(
            f"dartagnan.{key} = {name!r} is not a key of regressors.runs "
            f"({sorted(config['regressors']['runs'])}). Fix: name one (the expert: a run "
            f"with preset dartagnan_expert)."
        )
    return name


def dartagnan_tiny(model):
    """Tiny generator or tiny regressors: the table is a plumbing check."""
    runs = config["regressors"]["runs"]
    presets = [
        runs[dartagnan_run(key)].get("preset") for key in ("expert", "regressor")
    ]
    generator = (
        dartagnan_models()[model].get("generator", {}).get("preset", "reference")
    )
    return generator == "tiny" or "tiny" in presets


def dartagnan_datasets():
    """id -> model of every counterfactual dataset."""
    return {f"dartagnan_{model}_counterfactual": model for model in dartagnan_models()}


def dartagnan_score_inputs(wildcards):
    """A model's counterfactuals, the clips, both regressors' predictions on them, and
    LPIPS's trunk weights when metrics.lpips.weights names them."""
    dataset = f"dartagnan_{wildcards.model}_counterfactual"
    inputs = {
        "filelist": f"results/samples/{dataset}/FileList.csv",
        "videos": f"results/samples/{dataset}/Videos",
        "metainfo": dartagnan_metainfo(),
        "regressor": f"results/predictions/regressor_{dartagnan_run('regressor')}/{dataset}.csv",
        "expert": f"results/predictions/regressor_{dartagnan_run('expert')}/{dataset}.csv",
    }
    weights = config["metrics"]["lpips"]["weights"]
    if weights:
        inputs["lpips_weights"] = weights_file(weights)
    return inputs


def dartagnan_table_inputs(wildcards):
    datasets = list(dartagnan_datasets())
    return {
        "scores": [f"results/metrics/{d}_scores.csv" for d in datasets],
        "generation": [f"results/metrics/{d}.json" for d in datasets],
    }


def dartagnan_inference():
    """`dartagnan.inference` when it is switched on (its model checked), else None."""
    inference = dartagnan_config().get("inference", {})
    if not inference.get("activate"):
        return None
    if inference.get("model") not in dartagnan_models():
        raise WorkflowError(
            f"dartagnan.inference.model = {inference.get('model')!r} is not a key of "
            f"dartagnan.models ({sorted(dartagnan_models())}). Fix: name the model."
        )
    return inference


def dartagnan_inference_inputs(wildcards):
    """The model, its expert, the clips, and every plain video file of the items (a file
    under resources/phantom/<d>/ is made by make_phantom: its folder is the input)."""
    inputs = {
        "model": f"results/models/dartagnan_{wildcards.model}",
        "expert": f"results/models/regressor_{dartagnan_run('expert')}",
        "metainfo": dartagnan_metainfo(),
    }
    files = []
    for item in dartagnan_inference()["items"]:
        if "path" in item:
            parts = Path(item["path"]).parts
            phantom = parts[:2] == ("resources", "phantom") and len(parts) > 3
            files.append(str(Path(*parts[:3])) if phantom else item["path"])
    inputs["videos"] = sorted(set(files))
    return inputs


def dartagnan_targets():
    """Every D'ARTAGNAN artefact: each model, the evaluation of its counterfactuals, the
    table, and the inference items' counterfactuals."""
    targets = expand("results/models/dartagnan_{model}", model=dartagnan_models())
    targets += ["results/metrics/dartagnan.txt"]
    inference = dartagnan_inference()
    if inference:
        targets.append(
            f"results/counterfactuals/dartagnan_{inference['model']}/FileList.csv"
        )
    return targets + evaluation_targets(system="dartagnan")
