# cardiGAN (SPADE image synthesis from CAMUS masks): SPADE trains on the exported CAMUS
# images and masks (datasets.camus.views / phases; 4CH ED as cardiGAN); its images of the TEST masks are a synthetic dataset of the shared
# evaluation, scored against the real image of each mask and by a real-trained segmenter;
# its images of the TRAIN masks train U-Nets beside the real images (the experiment).


include: "cardigan_helpers.smk"


# Sampling jobs per TEST-mask dataset (override: --set-scatter cardigan_shard=N).
scattergather:
    cardigan_shard=cardigan_config()["shards"],


for _dataset, _model in cardigan_datasets().items():
    register_synthetic_dataset(
        _dataset,
        "cardigan",
        real=f"resources/reference_frames/camus_test_{cardigan_size(_model)}px",
        metrics=cardigan_config()["samples"]["metrics"],
        shards="cardigan_shard",
        tiny=cardigan_tiny(_model),
    )


rule camus_reference_frames:
    """The real CAMUS TEST images at a model's size as a frame folder (and its index csv)."""
    input:
        camus=cardigan_camus,
    output:
        frames=directory("resources/reference_frames/camus_test_{size}px"),
        index="resources/reference_frames/camus_test_{size}px.csv",
    log:
        "logs/camus_reference_frames/{size}.log",
    wildcard_constraints:
        size=r"\d+",
    conda:
        "../envs/echogen.yaml"
    params:
        quality=cardigan_config()["samples"]["quality"],
    script:
        "../workflow_scripts/camus_reference_frames.py"


rule train_cardigan:
    """Train SPADE (generator, multi-scale discriminator) on CAMUS train; resumable."""
    input:
        unpack(cardigan_train_inputs),
    output:
        model=directory("results/models/cardigan_{model}"),
    log:
        "logs/train_cardigan/{model}.log",
    benchmark:
        "benchmarks/train_cardigan/{model}.tsv"
    wildcard_constraints:
        model=names_pattern(cardigan_models()),
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=cardigan_config()["gpus"]["train"],
        mem_mb=tier_mem("gpu_train"),
        runtime=tier_runtime("gpu_train"),
    params:
        model=cardigan_model,
        state_dir="results/train_cardigan/{model}/state",
        seed=config["seed"],
    script:
        "../workflow_scripts/train_cardigan.py"


rule sample_cardigan:
    """Generate one shard of a model's images of the CAMUS TEST masks."""
    input:
        model="results/models/cardigan_{model}",
        camus=cardigan_camus,
    output:
        shard=directory("results/sample_shards/cardigan_{model}_test/{scatteritem}"),
    log:
        "logs/sample_cardigan/{model}_{scatteritem}.log",
    benchmark:
        "benchmarks/sample_cardigan/{model}_{scatteritem}.tsv"
    wildcard_constraints:
        model=names_pattern(cardigan_models()),
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=cardigan_config()["gpus"]["infer"],
        mem_mb=tier_mem("gpu_infer"),
        runtime=tier_runtime("gpu_infer"),
    params:
        sampling=cardigan_config()["samples"],
        split="test",
        seed=config["seed"],
    script:
        "../workflow_scripts/sample_cardigan.py"


rule sample_cardigan_train:
    """A model's images of the CAMUS TRAIN masks: the experiment's synthetic training set."""
    input:
        model="results/models/cardigan_{model}",
        camus=cardigan_camus,
    output:
        samples=directory("results/samples/cardigan_{model}_train"),
    log:
        "logs/sample_cardigan_train/{model}.log",
    benchmark:
        "benchmarks/sample_cardigan_train/{model}.tsv"
    wildcard_constraints:
        model=names_pattern(cardigan_models()),
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=cardigan_config()["gpus"]["infer"],
        mem_mb=tier_mem("gpu_infer"),
        runtime=tier_runtime("gpu_infer"),
    params:
        sampling=cardigan_config()["samples"],
        split="train",
        seed=config["seed"],
    script:
        "../workflow_scripts/sample_cardigan.py"


rule train_cardigan_segmenter:
    """Train a U-Net on real CAMUS train, on synthetic images of its masks, or on both."""
    input:
        unpack(cardigan_segmenter_inputs),
    output:
        model=directory("results/models/cardigan_segmenter_{source}"),
    log:
        "logs/train_cardigan_segmenter/{source}.log",
    benchmark:
        "benchmarks/train_cardigan_segmenter/{source}.tsv"
    wildcard_constraints:
        source="real|synthetic|mixed",
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=cardigan_config()["gpus"]["infer"],
        mem_mb=tier_mem("gpu_train"),
        runtime=tier_runtime("gpu_train"),
    params:
        segmentation=cardigan_config()["segmentation"],
        state_dir="results/train_cardigan_segmenter/{source}/state",
        seed=config["seed"],
    script:
        "../workflow_scripts/train_cardigan_segmenter.py"


rule score_cardigan:
    """Score every TEST-mask image (SSIM, LPIPS to the real image, the segmenter's Dice); the
    strips and the real-vs-generated embedding plot."""
    input:
        unpack(cardigan_score_inputs),
    output:
        scores="results/metrics/cardigan_{model}_test_scores.csv",
        strips=report(
            "results/report/cardigan_{model}_strips.png",
            category="cardiGAN",
            caption="../docs/report/cardigan_strips.rst",
        ),
        embedding=report(
            "results/report/cardigan_{model}_embedding.png",
            category="cardiGAN",
            caption="../docs/report/cardigan_embedding.rst",
        ),
    log:
        "logs/score_cardigan/{model}.log",
    benchmark:
        "benchmarks/score_cardigan/{model}.tsv"
    wildcard_constraints:
        model=names_pattern(cardigan_models()),
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=cardigan_config()["gpus"]["infer"],
        mem_mb=tier_mem("gpu_infer"),
        runtime=tier_runtime("gpu_infer"),
    params:
        lpips_net=config["metrics"]["lpips"]["net"],
        seed=config["seed"],
    script:
        "../workflow_scripts/score_cardigan.py"


rule cardigan_table:
    """cardiGAN's table: SSIM, LPIPS, FID and mask fidelity of every model's images."""
    input:
        scores=expand(
            "results/metrics/cardigan_{model}_test_scores.csv", model=cardigan_models()
        ),
        generation=expand("results/metrics/{dataset}.json", dataset=cardigan_datasets()),
    output:
        table=report(
            "results/metrics/cardigan.txt",
            category="Metric tables",
            caption="../docs/report/metric_table.rst",
        ),
        record="results/metrics/cardigan.json",
    log:
        "logs/cardigan_table/cardigan.log",
    localrule: True
    conda:
        "../envs/echogen.yaml"
    params:
        models=list(cardigan_models()),
        plumbing=[cardigan_tiny(m) for m in cardigan_models()],
    script:
        "../workflow_scripts/cardigan_table.py"


rule cardigan_segmentation_table:
    """The segmentation experiment: each U-Net's Dice on real TEST images, bootstrap CIs."""
    input:
        camus=cardigan_camus,
        segmenters=expand(
            "results/models/cardigan_segmenter_{source}", source=cardigan_sources()
        ),
    output:
        table=report(
            "results/metrics/cardigan_segmentation.txt",
            category="Metric tables",
            caption="../docs/report/metric_table.rst",
        ),
        record="results/metrics/cardigan_segmentation.json",
    log:
        "logs/cardigan_segmentation_table/cardigan.log",
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=cardigan_config()["gpus"]["infer"],
        mem_mb=tier_mem("gpu_infer"),
        runtime=tier_runtime("gpu_infer"),
    params:
        sources=cardigan_sources(),
        n_bootstrap=cardigan_config()["segmentation"]["n_bootstrap"],
        plumbing=any(cardigan_tiny(m) for m in cardigan_models()),
        seed=config["seed"],
    script:
        "../workflow_scripts/cardigan_segmentation_table.py"


register_targets("cardigan", cardigan_targets())


# cardiGAN: every SPADE, the evaluation of its images, both tables and the report strips.
rule cardigan:
    input:
        cardigan_targets(),
