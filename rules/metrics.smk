# Metric detectors and published weights, and generation metrics between frame folders.


rule build_tiny_detector:
    """Build a tiny random TorchScript detector with the public file's call signature (demo)."""
    output:
        detector="resources/weights/tiny/{detector}.pt",
    log:
        "logs/build_tiny_detector/{detector}.log",
    wildcard_constraints:
        detector=r"inception|i3d",
    localrule: True
    conda:
        "../envs/echogen.yaml"
    threads: 1
    params:
        seed=config["seed"],
    script:
        "../workflow_scripts/build_tiny_detector.py"


rule download_weights:
    """Fetch a public network file from its URL and check its SHA-256 (needs internet)."""
    output:
        weights="resources/weights/{name}.pt",
        sha256="resources/weights/{name}.sha256",
    log:
        "logs/download_weights/{name}.log",
    wildcard_constraints:
        name=r"[A-Za-z0-9_]+",
    localrule: True
    conda:
        "../envs/echogen.yaml"
    threads: 1
    params:
        entry=weights_entry,
    script:
        "../workflow_scripts/download_weights.py"


rule compute_generation_metrics:
    """Compare a fake frame folder with a real one (FID, IS, FVD the StyleGAN-V way; SSIM, LPIPS)."""
    input:
        unpack(comparison_inputs),
    output:
        table=report(
            "results/metrics/{run}.txt",
            category="Metric tables",
            caption="../docs/report/metric_table.rst",
        ),
        record="results/metrics/{run}.json",
    log:
        "logs/compute_generation_metrics/{run}.log",
    benchmark:
        "benchmarks/compute_generation_metrics/{run}.tsv"
    wildcard_constraints:
        run=comparison_pattern(),
    conda:
        "../envs/echogen.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=tier_mem("gpu_infer"),
        runtime=tier_runtime("gpu_infer"),
    params:
        comparison=comparison,
        detectors=detector_params(),
        lpips_net=config["metrics"]["lpips"]["net"],
        batch_size=config["metrics"]["batch_size"],
        cache_dir="resources/metric_cache" if config["metrics"]["cache"] else None,
        seed=config["seed"],
    script:
        "../workflow_scripts/compute_generation_metrics.py"
