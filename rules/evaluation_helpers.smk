# Input functions of the shared evaluation rules (rules/evaluation.smk), keyed on the
# synthetic-dataset ids of the registry (rules/common.smk). They never name a system.


def check_evaluation_datasets():
    """Every dataset id the `evaluation:` section names is registered by an active system.

    Ids of a system switched off (`<system>.activate: false`) are left out quietly, so a
    system can be switched off without editing this section.
    """
    named = {
        "evaluation.ef_fidelity.datasets": evaluation_config("ef_fidelity").get(
            "datasets", []
        ),
    }
    classification = evaluation_config("classification")
    if classification and is_activated("evaluation/classification"):
        named["evaluation.classification.dataset"] = [classification["dataset"]]
    for key, ids in named.items():
        unknown = [
            d
            for d in ids
            if d not in SYNTHETIC_DATASETS
            and system_on(d.split("_", 1)[0])
            or d.split("_", 1)[0] not in config
        ]
        if unknown:
            raise WorkflowError(
                f"{key} names {unknown}, which no active system registers (registered: "
                f"{sorted(SYNTHETIC_DATASETS)}). Fix: use a registered id (<system>_<name>, "
                "e.g. lvdm_dynamic)."
            )
    fidelity = evaluation_config("ef_fidelity")
    if (
        fidelity.get("datasets")
        and fidelity.get("regressor") not in config["regressors"]["runs"]
    ):
        raise WorkflowError(
            f"evaluation.ef_fidelity.regressor = {fidelity.get('regressor')!r} is not a key of "
            f"regressors.runs ({sorted(config['regressors']['runs'])}). Fix: name one of them."
        )


def ef_fidelity_inputs(wildcards):
    regressor = synthetic(wildcards)["ef_regressor"]
    return {
        "filelist": f"results/samples/{wildcards.dataset}/FileList.csv",
        "predictions": f"results/predictions/regressor_{regressor}/{wildcards.dataset}.csv",
        "model": f"results/models/regressor_{regressor}",
    }


def ef_fidelity_plumbing(wildcards):
    return synthetic(wildcards)["ef_plumbing"]


def synthetic_real(wildcards):
    return synthetic(wildcards)["real"]


def summary_datasets():
    """id -> {system, samples_dir, generation, ef_fidelity}: the summary script's arguments."""
    return {
        dataset: {
            "system": entry["system"],
            "samples_dir": f"results/samples/{dataset}",
            "generation": f"results/metrics/{dataset}.json",
            "ef_fidelity": (
                f"results/metrics/ef_fidelity_{dataset}.json"
                if entry["ef_regressor"]
                else None
            ),
        }
        for dataset, entry in SYNTHETIC_DATASETS.items()
    }


def summary_inputs(wildcards):
    """Every registered dataset's FileList and the metric records the summary reads."""
    datasets = summary_datasets().values()
    return {
        "filelists": [f"{entry['samples_dir']}/FileList.csv" for entry in datasets],
        "records": [
            path
            for entry in datasets
            for path in (entry["generation"], entry["ef_fidelity"])
            if path
        ],
    }


def classification_config():
    return evaluation_config("classification")


def classifier_tasks():
    """evaluation.classification.tasks: task name -> class ids (null: every class)."""
    return classification_config().get("tasks") or {"all": None}


def classifier_classes(task):
    """The class ids of classification task `task`, sorted (every class of the class map when
    the task lists none)."""
    tasks = classifier_tasks()
    if task not in tasks:
        raise WorkflowError(
            f"classification task {task!r} is not in evaluation.classification.tasks "
            f"({sorted(tasks)}). Fix: add it there or ask for one of those."
        )
    classes = tasks[task]
    if classes is None:
        classes = config["datasets"]["cardiacnet"].get("class_map", {}).values()
    return sorted(int(c) for c in classes)


def classifier_task_classes(wildcards):
    return classifier_classes(wildcards.task)


def classifier_class_names():
    """task -> the names of its classes, label by label (from the CardiacNet class_map)."""
    class_map = config["datasets"]["cardiacnet"].get("class_map", {})
    names = {v: k for k, v in class_map.items()}
    return {
        task: [names.get(c, str(c)) for c in classifier_classes(task)]
        for task in classifier_tasks()
    }


def classification_plumbing():
    """The table is a plumbing check: tiny classifiers, or a tiny generator's videos."""
    classification = classification_config()
    dataset = SYNTHETIC_DATASETS.get(classification.get("dataset"), {})
    return classification.get("preset") == "tiny" or bool(dataset.get("tiny"))


def synthetic_classification_inputs():
    """The synthetic dataset's FileList and videos (the classifiers' synthetic videos)."""
    dataset = classification_config()["dataset"]
    return {
        "filelist": f"results/samples/{dataset}/FileList.csv",
        "videos": f"results/samples/{dataset}/Videos",
    }


def classifier_inputs(wildcards):
    classification = classification_config()
    inputs = {"manifest": "resources/manifests/cardiacnet.csv"}
    if wildcards.source != "real":
        inputs.update(synthetic_classification_inputs())
    if classification.get("pretrained"):
        inputs["weights"] = weights_file(classification["pretrained"])
    return inputs


def predict_classifier_inputs(wildcards):
    """The model of run `{task}_{source}[_fold{k}]`, the manifest, and the synthetic videos
    when a test set is synthetic."""
    inputs = {
        "model": f"results/models/classifier_cardiacnet_{wildcards.run}",
        "manifest": "resources/manifests/cardiacnet.csv",
    }
    if "synthetic" in classification_config().get("test_sets", ["real"]):
        inputs.update(synthetic_classification_inputs())
    return inputs


def classifier_runs():
    """Every classifier run, task by task, source by source, fold by fold (the table rule's
    order): `{task}_{source}`, or `{task}_{source}_fold{k}` under cv_folds."""
    classification = classification_config()
    folds = classification.get("cv_folds")
    suffixes = [f"_fold{k}" for k in range(1, folds + 1)] if folds else [""]
    return [
        f"{task}_{source}{suffix}"
        for task in classifier_tasks()
        for source in classification["sources"]
        for suffix in suffixes
    ]


def classifier_predictions(wildcards):
    """Every run's predictions, in classifier_runs' order."""
    return [
        f"results/predictions/classifier_cardiacnet/{run}.csv"
        for run in classifier_runs()
    ]
