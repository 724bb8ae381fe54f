# Helpers of the latent video diffusion line (rules/lvdm.smk includes this file; snakemake
# --lint wants functions and rules in separate files). Read only when lvdm is active.


def lvdm_config():
    return config["lvdm"]


def lvdm_samples():
    return lvdm_config()["samples"]


def lvdm_models():
    return lvdm_config()["models"]


def vae_dir():
    """The VAE the latents and samples use: a pretrained diffusers folder or results/models/vae."""
    pretrained = lvdm_config()["vae"].get("pretrained")
    return pretrained if pretrained else "results/models/vae"


def vae_manifests(wildcards):
    return expand(
        "resources/manifests/{dataset}.csv", dataset=lvdm_config()["vae"]["datasets"]
    )


def latent_parts(wildcards):
    return part_dirs("resources/latents/{dataset}/part_{chunk}", wildcards.dataset)


def latent_indexes(datasets):
    return expand("resources/latents/{dataset}/index.csv", dataset=datasets)


def lvdm_model(wildcards):
    return lvdm_models()[wildcards.model]


def lvdm_model_inputs(wildcards):
    model = lvdm_model(wildcards)
    inputs = {"latents": latent_indexes(model["datasets"])}
    if model["conditioning"] == "text":
        if not model.get("text_encoder") or not model.get("prompt"):
            raise WorkflowError(
                f"lvdm.models.{wildcards.model} is text-conditioned but has no "
                f"text_encoder or prompt. Fix: set text_encoder (a weights key, e.g. clip_text) "
                f"and prompt (e.g. 'An echocardiography video with {{class_name}} condition')."
            )
        inputs["text_encoder"] = weights_file(model["text_encoder"])
    return inputs


def lvdm_sample(wildcards):
    return lvdm_samples()[wildcards.sample]


def lvdm_sample_inputs(wildcards):
    """The LVDM, the VAE and the conditioning frames: the privacy-kept images of the
    sample's LIDM (`lidm`), or the real TRAIN latents of its dataset (non-private)."""
    sample = lvdm_sample(wildcards)
    if sample["model"] not in lvdm_models():
        raise WorkflowError(
            f"lvdm.samples.{wildcards.sample}.model = {sample['model']!r} is not a key of "
            f"lvdm.models ({sorted(lvdm_models())}). Fix: name one of them."
        )
    inputs = {"lvdm": f"results/models/lvdm_{sample['model']}", "vae": vae_dir()}
    lidm = sample.get("lidm")
    if lidm is None:
        inputs["latents"] = f"resources/latents/{sample['dataset']}/index.csv"
        return inputs
    if lidm not in lvdm_lidms():
        raise WorkflowError(
            f"lvdm.samples.{wildcards.sample}.lidm = {lidm!r} is not a key of lvdm.lidms "
            f"({sorted(lvdm_lidms())}). Fix: name one of them, or null for real frames."
        )
    inputs["latents"] = lidm_images_list(lidm)
    inputs["images"] = f"results/samples/lidm_{lidm}/latents"
    return inputs


def lvdm_lidms():
    return lvdm_config().get("lidms", {})


def released(entries, want=True):
    """The names of the entries that load released weights (`pretrained`), or the others."""
    return [
        name for name, entry in entries.items() if bool(entry.get("pretrained")) == want
    ]


def released_privacy():
    """dataset -> released re-identification weights file (`lvdm.privacy.pretrained`)."""
    return lvdm_config().get("privacy", {}).get("pretrained") or {}


def import_inputs(kind):
    """Inputs of an import_<kind> rule: the released weights, and the latent indexes (and
    the text encoder) the model folder's spec comes from."""

    def inputs(wildcards):
        if kind == "privacy":
            return {"weights": released_privacy()[wildcards.dataset]}
        if kind == "lidm":
            entry = lidm_entry(wildcards)
            return {
                "weights": entry["pretrained"],
                "latents": latent_indexes([entry["dataset"]]),
            }
        entry = lvdm_model(wildcards)
        found = {**lvdm_model_inputs(wildcards), "weights": entry["pretrained"]}
        return found

    return inputs


def import_entry(kind):
    def entry(wildcards):
        if kind == "privacy":
            return lvdm_config()["privacy"]
        return lidm_entry(wildcards) if kind == "lidm" else lvdm_model(wildcards)

    return entry


def lidm_entry(wildcards):
    return lvdm_lidms()[wildcards.lidm]


def lidm_images_list(lidm):
    """The images an LVDM may animate: those the privacy filter kept when it is on."""
    if is_activated("lvdm/privacy"):
        return f"results/privacy/lidm_{lidm}/FileList.csv"
    return f"results/samples/lidm_{lidm}/FileList.csv"


def privacy_inputs(wildcards):
    sample = lvdm_sample(wildcards)
    return {
        "model": f"results/models/privacy_{sample['dataset']}",
        "latents": f"resources/latents/{sample['dataset']}/index.csv",
        "filelist": f"results/samples/lvdm_{wildcards.sample}/FileList.csv",
        "sample_latents": f"results/samples/lvdm_{wildcards.sample}/latents",
    }


def lidm_privacy_inputs(wildcards):
    lidm = lidm_entry(wildcards)
    return {
        "model": f"results/models/privacy_{lidm['dataset']}",
        "latents": f"resources/latents/{lidm['dataset']}/index.csv",
        "filelist": f"results/samples/lidm_{wildcards.lidm}/FileList.csv",
        "sample_latents": f"results/samples/lidm_{wildcards.lidm}/latents",
    }


def privacy_datasets():
    """Datasets whose re-identification network a filter needs: one network per dataset, as
    EchoNet-Synthetic trains one per LIDM."""
    datasets = [lidm["dataset"] for lidm in lvdm_lidms().values()]
    datasets += [lvdm_samples()[name]["dataset"] for name in privacy_samples()]
    return sorted(set(datasets)) if is_activated("lvdm/privacy") else []


def privacy_train_inputs(wildcards):
    """The dataset's latent index, and torchvision's ImageNet ResNet-50 when the trunk
    starts from it (`lvdm.privacy.imagenet`)."""
    inputs = {"latents": latent_indexes([wildcards.dataset])}
    imagenet = lvdm_config()["privacy"].get("imagenet")
    if imagenet:
        inputs["imagenet"] = weights_file(imagenet)
    return inputs


def privacy_samples():
    """Synthetic video sets filtered after sampling: those asking for it that animate real
    frames (a set animating LIDM images was filtered before animation)."""
    if not is_activated("lvdm/privacy"):
        return []
    return [
        name
        for name, s in lvdm_samples().items()
        if s.get("privacy", True) and s.get("lidm") is None
    ]


def lvdm_targets():
    """Every LVDM artefact: its datasets' evaluations, privacy summaries, classification."""
    targets = evaluation_targets(system="lvdm")
    targets += expand(
        "results/privacy/lvdm_{sample}/summary.json", sample=privacy_samples()
    )
    if is_activated("lvdm/privacy"):
        targets += expand("results/privacy/lidm_{lidm}/summary.json", lidm=lvdm_lidms())
        targets += expand("results/metrics/lidm_{lidm}_private.txt", lidm=lvdm_lidms())
    targets.append("results/report/loss_curves.png")
    return targets


def loss_logs(wildcards):
    """Training logs plotted in the report: the VAE (when trained here) and every LVDM."""
    logs = {}
    if not lvdm_config()["vae"].get("pretrained"):
        logs["vae"] = "results/models/vae"
    for name in released(lvdm_lidms(), want=False):
        logs[f"lidm_{name}"] = f"results/models/lidm_{name}"
    for name in released(lvdm_models(), want=False):
        logs[f"lvdm_{name}"] = f"results/models/lvdm_{name}"
    return logs
