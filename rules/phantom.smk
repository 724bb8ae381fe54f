rule make_phantom:
    """Write one synthetic raw dataset in its public download's layout."""
    output:
        root=directory("resources/phantom/{dataset}"),
    log:
        "logs/make_phantom/{dataset}.log",
    benchmark:
        "benchmarks/make_phantom/{dataset}.tsv"
    conda:
        "../envs/echogen.yaml"
    threads: 1
    resources:
        mem_mb=tier_mem("cpu_small"),
        runtime=tier_runtime("cpu_chunk"),
    params:
        phantom=phantom_params,
        seed=config["seed"],
    script:
        "../workflow_scripts/make_phantom.py"
