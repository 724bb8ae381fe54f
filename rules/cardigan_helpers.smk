# Helpers of the cardiGAN line (rules/cardigan.smk includes this file; snakemake --lint
# wants functions and rules in separate files). Read only when cardigan is active.

# Snakemake fills schema defaults only outside $ref'd fragments: validate the section against
# its own fragment so that its defaults (gpus, shards, samples ...) are filled in too.
validate(config["cardigan"], "../config/schemas/cardigan.schema.yaml")

CAMUS = "resources/camus"


def cardigan_config():
    return config["cardigan"]


def cardigan_models():
    return cardigan_config()["models"]


def cardigan_model(wildcards):
    return cardigan_models()[wildcards.model]


def cardigan_camus(wildcards=None):
    """The exported CAMUS images and labels (datasets.camus must be active)."""
    if not is_activated("datasets/camus"):
        raise WorkflowError(
            "cardigan trains on CAMUS. Fix: activate datasets.camus (the phantom's or a "
            "download's camus05_256.hdf5)."
        )
    return CAMUS


def cardigan_size(model):
    """Image side of a model: its train.size (SPADE's default 256); the generator follows it."""
    return int(cardigan_models()[model].get("train", {}).get("size", 256))


def cardigan_tiny(model):
    """A tiny generator or segmenter, or a random perceptual network: a plumbing check."""
    entry = cardigan_models()[model]
    segmentation = cardigan_config()["segmentation"]
    return (
        entry.get("generator", {}).get("preset", "reference") == "tiny"
        or segmentation["model"].get("preset", "reference") == "tiny"
        or not cardigan_config()["vgg"]
    )


def cardigan_train_inputs(wildcards):
    """CAMUS, and the perceptual loss's VGG19 when cardigan.vgg names it."""
    inputs = {"camus": cardigan_camus()}
    if cardigan_config()["vgg"]:
        inputs["vgg"] = weights_file(cardigan_config()["vgg"])
    return inputs


def cardigan_generator():
    """The model whose TRAIN-mask images are the experiment's synthetic set (checked)."""
    name = cardigan_config()["segmentation"]["generator"] or next(
        iter(cardigan_models())
    )
    if name not in cardigan_models():
        raise WorkflowError(
            f"cardigan.segmentation.generator = {name!r} is not a key of cardigan.models "
            f"({sorted(cardigan_models())}). Fix: name one."
        )
    return name


def cardigan_sources():
    """The experiment's training sets; `real` always (it scores mask fidelity)."""
    return list(dict.fromkeys(["real", *cardigan_config()["segmentation"]["sources"]]))


def cardigan_segmenter_inputs(wildcards):
    """CAMUS, and the synthetic TRAIN-mask images for the synthetic and mixed sets."""
    inputs = {"camus": cardigan_camus()}
    if wildcards.source != "real":
        inputs["synthetic"] = f"results/samples/cardigan_{cardigan_generator()}_train"
    return inputs


def cardigan_score_inputs(wildcards):
    dataset = f"results/samples/cardigan_{wildcards.model}_test"
    inputs = {
        "filelist": f"{dataset}/FileList.csv",
        "frames": f"{dataset}/frames",
        "segmenter": "results/models/cardigan_segmenter_real",
        "real": f"resources/reference_frames/camus_test_{cardigan_size(wildcards.model)}px",
        "inception": weights_file("inception"),
    }
    weights = config["metrics"]["lpips"]["weights"]
    if weights:
        inputs["lpips_weights"] = weights_file(weights)
    return inputs


def cardigan_datasets():
    """id -> model of every TEST-mask image dataset."""
    return {f"cardigan_{model}_test": model for model in cardigan_models()}


def cardigan_targets():
    """Every cardiGAN artefact: each SPADE, its TEST-mask dataset's evaluation, the table,
    the segmenters and the segmentation table."""
    targets = expand("results/models/cardigan_{model}", model=cardigan_models())
    targets += [
        "results/metrics/cardigan.txt",
        "results/metrics/cardigan_segmentation.txt",
    ]
    targets += expand(
        "results/report/cardigan_{model}_strips.png", model=cardigan_models()
    )
    return targets + evaluation_targets(system="cardigan")
