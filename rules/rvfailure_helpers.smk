# Helpers of the RV-failure line (rules/rvfailure.smk includes this file; snakemake --lint
# wants functions and rules in separate files). Read only when rvfailure is active.

from snakemake.logging import logger
from snakemake.settings.types import DeploymentMethod

# Snakemake fills schema defaults only outside $ref'd fragments: validate the section against
# its own fragment so that its defaults (gpus, network, pretrain ...) are filled in too.
validate(config["rvfailure"], "../config/schemas/rvfailure.schema.yaml")

RV_SPLITS = "resources/rvfailure/splits"
# The TF1 step runs outside Snakemake's script: machinery (its Python 3.6 cannot load it).
RV_INNVESTIGATE_SCRIPT = str(
    Path(workflow.basedir) / "workflow_scripts" / "innvestigate_rvfailure.py"
)


def rv_config():
    return config["rvfailure"]


def rv_models():
    return rv_config()["models"]


def rv_pretrain_dataset():
    """The EF dataset the streams pretrain on, or None (checked to have flow)."""
    dataset = rv_config()["pretrain"]["dataset"]
    if dataset is None:
        return None
    flow = config["derived"]["flow"]
    if not (is_activated("derived/flow") and dataset in flow["datasets"]):
        raise WorkflowError(
            f"rvfailure.pretrain.dataset = {dataset!r} has no optical flow. Fix: add it to "
            "derived.flow.datasets (and activate derived.flow), or set "
            "rvfailure.pretrain.dataset: null."
        )
    return dataset


def rv_streams():
    """Every stream some model uses, in the order grey, flow."""
    used = {s for streams in rv_models().values() for s in streams}
    return [s for s in ("grey", "flow") if s in used]


def rv_kinetics(stream):
    """The weights key of a stream's Kinetics checkpoint, or None."""
    return rv_config()["kinetics"][stream]


def rv_require_data():
    if not is_activated("datasets/rvfailure"):
        raise WorkflowError(
            "rvfailure trains on the LVAD DICOMs. Fix: activate datasets.rvfailure (the "
            "phantom's or your REDCap export)."
        )


def rv_pretrain_inputs(wildcards):
    dataset = rv_pretrain_dataset()
    inputs = {"manifest": f"resources/manifests/{dataset}.csv"}
    if wildcards.stream == "flow":
        inputs["flow"] = f"resources/flow/{dataset}/index.csv"
    if rv_kinetics(wildcards.stream):
        inputs["kinetics"] = weights_file(rv_kinetics(wildcards.stream))
    return inputs


def rv_train_inputs(wildcards):
    """The TRAIN and VAL split csvs (and TEST's when clips.stat_splits names it) and where
    each stream starts: its EF pretraining, else a Kinetics checkpoint when one is named.
    """
    rv_require_data()
    inputs = {"train": f"{RV_SPLITS}/train.csv", "val": f"{RV_SPLITS}/val.csv"}
    if "TEST" in rv_config()["clips"].get("stat_splits", ["TRAIN"]):
        # for the z-score statistics only (the reference pools every split)
        inputs["test"] = f"{RV_SPLITS}/test.csv"
    for stream in rv_models()[wildcards.model]:
        if rv_pretrain_dataset():
            inputs[f"pretrained_{stream}"] = (
                f"results/models/rvfailure_pretrain_{stream}"
            )
        elif rv_kinetics(stream):
            inputs[f"kinetics_{stream}"] = weights_file(rv_kinetics(stream))
    return inputs


def rv_init(inputs):
    """{stream: [kind, path]} from a job's named inputs (see rv_train_inputs)."""
    init = {}
    for name, path in inputs.items():
        for kind in ("pretrained", "kinetics"):
            if name.startswith(f"{kind}_"):
                init[name.removeprefix(f"{kind}_")] = [kind, path]
    return init


def rv_innvestigate():
    """The TF1 step's settings (rvfailure.innvestigate), or None when it is off, or when its
    interpreter is missing outside --sdm conda (then the step is left out, with a warning:
    the rest of the workflow runs on machines without a Python 3.6)."""
    settings = rv_config()["innvestigate"]
    if not settings["enabled"]:
        return None
    if not Path(rv_innvestigate_python(None)).is_file() and not rv_use_conda():
        logger.warning(
            f"rvfailure: the TF1 innvestigate step is left out: {RV_INNVESTIGATE_MISSING}"
        )
        return None
    return settings


def rv_use_conda():
    return DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method


def rv_innvestigate_python(wildcards):
    """The TF1 step's interpreter: the conda environment's under --sdm conda, else the one
    rvfailure.innvestigate.python names (relative to the echogen checkout). Whether it
    exists is checked when the job runs (planning needs no TF1), with this advice:"""
    if rv_use_conda():
        return "python"
    python = Path(rv_config()["innvestigate"]["python"])
    if not python.is_absolute():
        python = Path(workflow.basedir) / python
    return str(python)


RV_INNVESTIGATE_MISSING = (
    "rvfailure.innvestigate.python does not name an interpreter (the TF1 innvestigate "
    "step's Python 3.6). Fix: build it with `bash envs/setup_innvestigate.sh` (needs a Python "
    "3.6; PYTHON36=/path/to/python3.6), or run with --sdm conda (envs/innvestigate.yaml), or "
    "set rvfailure.innvestigate.enabled: false."
)


def rv_plumbing():
    """Demo-sized networks (or no pretraining data of the paper): the table says so."""
    return rv_config()["network"]["depth"] < 152


def rv_targets():
    """Every RV-failure artefact: the networks, their predictions, their guided
    backpropagation (captum, and innvestigate's with its agreement) and the table."""
    targets = expand("results/models/rvfailure_{model}", model=rv_models())
    targets += expand(
        "results/metrics/rvfailure_{model}_predictions.csv", model=rv_models()
    )
    targets += expand(
        "results/report/rvfailure_{model}_saliency.gif", model=rv_models()
    )
    if rv_innvestigate():
        targets += expand(
            "results/metrics/rvfailure_{model}_saliency_agreement.json",
            model=rv_models(),
        )
    return targets + ["results/metrics/rvfailure.txt"]
