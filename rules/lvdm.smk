# Latent video diffusion (EchoNet-Synthetic, EchoDream): VAE, latents, LIDM image sets and
# their privacy filter, LVDM training, sharded sampling animating the kept images, EF fidelity,
# CardiacNet classification, report figures.


include: "lvdm_helpers.smk"


# Sampling jobs per synthetic dataset (override: --set-scatter lvdm_shard=N).
scattergather:
    lvdm_shard=lvdm_config()["shards"],


# Every synthetic dataset of this system is evaluated by the shared rules (rules/evaluation.smk,
# rules/metrics.smk): generation metrics, a report strip, EF fidelity where asked for, the
# summary row.
for _name, _lidm in lvdm_lidms().items():
    register_synthetic_dataset(
        f"lidm_{_name}",
        "lvdm",
        real=_lidm["real"],
        metrics=_lidm["metrics"],
        shards="lvdm_shard",
        tiny=_lidm.get("preset") == "tiny",
    )
    if is_activated("lvdm/privacy"):  # FID/IS of the images the filter kept
        register_comparison(
            f"lidm_{_name}_private",
            real=_lidm["real"],
            fake=f"results/privacy/lidm_{_name}/frames",
            metrics=_lidm["metrics"],
        )
for _name, _sample in lvdm_samples().items():
    register_synthetic_dataset(
        f"lvdm_{_name}",
        "lvdm",
        real=_sample["real"],
        metrics=_sample["metrics"],
        shards="lvdm_shard",
        tiny=lvdm_models()[_sample["model"]].get("preset") == "tiny",
    )


rule build_tiny_text_encoder:
    """Build a tiny CLIP text model (transformers classes, random weights) for the demo."""
    output:
        folder=directory("resources/weights/tiny/clip_text"),
    log:
        "logs/build_tiny_text_encoder/clip_text.log",
    localrule: True
    conda:
        "../envs/echogen.yaml"
    threads: 1
    params:
        seed=config["seed"],
    script:
        "../workflow_scripts/build_tiny_text_encoder.py"


rule train_vae:
    """Train the image VAE (reconstruction + KL + LPIPS + late patch discriminator); resumable."""
    input:
        manifests=vae_manifests,
    output:
        model=directory("results/models/vae"),
    log:
        "logs/train_vae/vae.log",
    benchmark:
        "benchmarks/train_vae/vae.tsv"
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=lvdm_config()["gpus"]["train"],
        mem_mb=tier_mem("gpu_train"),
        runtime=tier_runtime("gpu_train"),
    params:
        vae=lvdm_config()["vae"],
        size=lvdm_config()["latents"]["size"],
        fps=lvdm_config()["latents"]["fps"],
        state_dir="results/train_vae/state",
        seed=config["seed"],
    script:
        "../workflow_scripts/train_vae.py"


rule encode_latents:
    """Encode one chunk of a dataset's videos into VAE latents (scaled, 32 Hz, unpadded)."""
    input:
        manifest="resources/manifests/{dataset}.csv",
        vae=vae_dir(),
    output:
        part=directory("resources/latents/{dataset}/part_{chunk}"),
    log:
        "logs/encode_latents/{dataset}_{chunk}.log",
    benchmark:
        "benchmarks/encode_latents/{dataset}_{chunk}.tsv"
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=lvdm_config()["gpus"]["infer"],
        mem_mb=tier_mem("gpu_infer"),
        runtime=tier_runtime("gpu_infer"),
    params:
        latents=lvdm_config()["latents"],
        n_chunks=chunks_of,
        on_error=dataset_on_error,
    script:
        "../workflow_scripts/encode_latents.py"


rule gather_latents:
    """Index a dataset's latent chunks into resources/latents/<dataset>/index.csv."""
    input:
        parts=latent_parts,
    output:
        index="resources/latents/{dataset}/index.csv",
        quarantine="resources/latents/{dataset}/quarantine.csv",
    log:
        "logs/gather_latents/{dataset}.log",
    localrule: True
    conda:
        "../envs/echogen.yaml"
    script:
        "../workflow_scripts/gather_parts.py"


rule train_lidm:
    """Train a latent image diffusion model on single latent frames of one dataset; resumable."""
    input:
        latents=lambda wildcards: latent_indexes([lidm_entry(wildcards)["dataset"]]),
    output:
        model=directory("results/models/lidm_{lidm}"),
    log:
        "logs/train_lidm/{lidm}.log",
    benchmark:
        "benchmarks/train_lidm/{lidm}.tsv"
    wildcard_constraints:
        lidm=names_pattern(released(lvdm_lidms(), want=False)),
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=lvdm_config()["gpus"].get("lidm", 1),
        mem_mb=tier_mem("gpu_train"),
        runtime=tier_runtime("gpu_train"),
    params:
        model=lidm_entry,
        state_dir="results/train_lidm/{lidm}/state",
        seed=config["seed"],
    script:
        "../workflow_scripts/train_lidm.py"


rule import_lidm:
    """An LIDM folder from released weights (lvdm.lidms.<name>.pretrained) instead of training."""
    input:
        unpack(import_inputs("lidm")),
    output:
        model=directory("results/models/lidm_{lidm}"),
    log:
        "logs/import_lidm/{lidm}.log",
    wildcard_constraints:
        lidm=names_pattern(released(lvdm_lidms())),
    localrule: True
    conda:
        "../envs/echogen.yaml"
    params:
        kind="lidm",
        entry=import_entry("lidm"),
    script:
        "../workflow_scripts/train_from_release.py"


rule sample_lidm:
    """Generate one shard of an LIDM image set (one-frame videos, their latents kept)."""
    input:
        lidm="results/models/lidm_{lidm}",
        vae=vae_dir(),
    output:
        shard=directory("results/sample_shards/lidm_{lidm}/{scatteritem}"),
    log:
        "logs/sample_lidm/{lidm}_{scatteritem}.log",
    benchmark:
        "benchmarks/sample_lidm/{lidm}_{scatteritem}.tsv"
    wildcard_constraints:
        lidm=names_pattern(lvdm_lidms()),
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=lvdm_config()["gpus"]["infer"],
        mem_mb=tier_mem("gpu_infer"),
        runtime=tier_runtime("gpu_infer"),
    params:
        sampling=lambda wildcards: lidm_entry(wildcards)["sampling"],
        seed=config["seed"],
    script:
        "../workflow_scripts/sample_lidm.py"


rule filter_lidm:
    """Keep the LIDM images no closer to a real TRAIN frame than real patients are to each other."""
    input:
        unpack(lidm_privacy_inputs),
    output:
        filelist="results/privacy/lidm_{lidm}/FileList.csv",
        dropped="results/privacy/lidm_{lidm}/dropped.csv",
        summary="results/privacy/lidm_{lidm}/summary.json",
        frames=directory("results/privacy/lidm_{lidm}/frames"),
    log:
        "logs/filter_lidm/{lidm}.log",
    wildcard_constraints:
        lidm=names_pattern(lvdm_lidms()),
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=tier_mem("gpu_infer"),
        runtime=tier_runtime("gpu_infer"),
    params:
        percentile=lvdm_config().get("privacy", {}).get("percentile", 95),
        heldout=lvdm_config().get("privacy", {}).get("heldout", ["VAL", "TEST"]),
        link_frames=True,
    script:
        "../workflow_scripts/filter_samples.py"


rule train_lvdm:
    """Train a latent video diffusion model (v-prediction DDPM, EMA, CFG dropout); resumable."""
    input:
        unpack(lvdm_model_inputs),
    output:
        model=directory("results/models/lvdm_{model}"),
    log:
        "logs/train_lvdm/{model}.log",
    benchmark:
        "benchmarks/train_lvdm/{model}.tsv"
    wildcard_constraints:
        model=names_pattern(released(lvdm_models(), want=False)),
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=lvdm_config()["gpus"]["train"],
        mem_mb=tier_mem("gpu_train"),
        runtime=tier_runtime("gpu_train"),
    params:
        model=lvdm_model,
        state_dir="results/train_lvdm/{model}/state",
        seed=config["seed"],
    script:
        "../workflow_scripts/train_lvdm.py"


rule import_lvdm:
    """An LVDM folder from released weights (lvdm.models.<name>.pretrained) instead of training."""
    input:
        unpack(import_inputs("lvdm")),
    output:
        model=directory("results/models/lvdm_{model}"),
    log:
        "logs/import_lvdm/{model}.log",
    wildcard_constraints:
        model=names_pattern(released(lvdm_models())),
    localrule: True
    conda:
        "../envs/echogen.yaml"
    params:
        kind="lvdm",
        entry=import_entry("lvdm"),
    script:
        "../workflow_scripts/train_from_release.py"


rule sample_lvdm:
    """Generate one shard of a synthetic dataset (sample i's seed depends on the run seed and i)."""
    input:
        unpack(lvdm_sample_inputs),
    output:
        shard=directory("results/sample_shards/lvdm_{sample}/{scatteritem}"),
    log:
        "logs/sample_lvdm/{sample}_{scatteritem}.log",
    benchmark:
        "benchmarks/sample_lvdm/{sample}_{scatteritem}.tsv"
    wildcard_constraints:
        sample=names_pattern(lvdm_samples()),
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=lvdm_config()["gpus"]["infer"],
        mem_mb=tier_mem("gpu_infer"),
        runtime=tier_runtime("gpu_infer"),
    params:
        sample=lvdm_sample,
        seed=config["seed"],
    script:
        "../workflow_scripts/sample_lvdm.py"


rule train_privacy:
    """Train a dataset's Siamese re-identification network on its TRAIN latent frames; resumable."""
    input:
        unpack(privacy_train_inputs),
    output:
        model=directory("results/models/privacy_{dataset}"),
    log:
        "logs/train_privacy/{dataset}.log",
    benchmark:
        "benchmarks/train_privacy/{dataset}.tsv"
    wildcard_constraints:
        dataset=names_pattern(
            [d for d in privacy_datasets() if d not in released_privacy()]
        ),
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=lvdm_config()["gpus"].get("privacy", 1),
        mem_mb=tier_mem("gpu_train"),
        runtime=tier_runtime("gpu_train"),
    params:
        privacy=lvdm_config().get("privacy", {}),
        state_dir="results/train_privacy/{dataset}/state",
        seed=config["seed"],
    script:
        "../workflow_scripts/train_privacy.py"


rule import_privacy:
    """A re-identification network from released weights (lvdm.privacy.pretrained.<dataset>)."""
    input:
        unpack(import_inputs("privacy")),
    output:
        model=directory("results/models/privacy_{dataset}"),
    log:
        "logs/import_privacy/{dataset}.log",
    wildcard_constraints:
        dataset=names_pattern(released_privacy()),
    localrule: True
    conda:
        "../envs/echogen.yaml"
    params:
        kind="privacy",
        entry=import_entry("privacy"),
    script:
        "../workflow_scripts/train_from_release.py"


rule filter_samples:
    """Drop synthetic videos too close to a real TRAIN video (tau from real-to-real correlation)."""
    input:
        unpack(privacy_inputs),
    output:
        filelist="results/privacy/lvdm_{sample}/FileList.csv",
        dropped="results/privacy/lvdm_{sample}/dropped.csv",
        summary="results/privacy/lvdm_{sample}/summary.json",
    log:
        "logs/filter_samples/{sample}.log",
    wildcard_constraints:
        sample=names_pattern(lvdm_samples()),
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=tier_mem("gpu_infer"),
        runtime=tier_runtime("gpu_infer"),
    params:
        percentile=lvdm_config().get("privacy", {}).get("percentile", 95),
        heldout=lvdm_config().get("privacy", {}).get("heldout", ["VAL", "TEST"]),
        link_frames=False,
    script:
        "../workflow_scripts/filter_samples.py"


rule report_loss_curves:
    """Training loss curves of the VAE and every LVDM for the report."""
    input:
        unpack(loss_logs),
    output:
        png=report(
            "results/report/loss_curves.png",
            category="Training",
            caption="../docs/report/loss_curves.rst",
        ),
    log:
        "logs/report_loss_curves/lvdm.log",
    localrule: True
    conda:
        "../envs/echogen.yaml"
    script:
        "../workflow_scripts/report_loss_curves.py"


register_targets("lvdm", lvdm_targets())


# Latent video diffusion: synthetic datasets, their tables, EF fidelity, classification, figures
# (the evaluations named in `evaluation:` for its datasets).
rule lvdm:
    input:
        lvdm_targets(),
