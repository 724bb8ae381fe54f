rule extract_dartagnan_clips:
    """Cut one chunk of D'ARTAGNAN clips (64 frames at 32 fps between ES and ED)."""
    input:
        manifest="resources/manifests/{dataset}.csv",
    output:
        part=directory("resources/dartagnan/{dataset}/part_{chunk}"),
    log:
        "logs/extract_dartagnan_clips/{dataset}_{chunk}.log",
    benchmark:
        "benchmarks/extract_dartagnan_clips/{dataset}_{chunk}.tsv"
    conda:
        "../envs/echogen.yaml"
    threads: 1
    resources:
        mem_mb=tier_mem("cpu_chunk"),
        runtime=tier_runtime("cpu_chunk"),
    params:
        clips=config["derived"]["dartagnan_clips"],
        n_chunks=chunks_of,
        on_error=dataset_on_error,
    script:
        "../workflow_scripts/extract_dartagnan_clips.py"


rule gather_dartagnan_clips:
    """Index D'ARTAGNAN clip chunks into metainfo.csv."""
    input:
        parts=dartagnan_parts,
    output:
        index="resources/dartagnan/{dataset}/metainfo.csv",
        quarantine="resources/dartagnan/{dataset}/quarantine.csv",
    log:
        "logs/gather_dartagnan_clips/{dataset}.log",
    localrule: True
    conda:
        "../envs/echogen.yaml"
    script:
        "../workflow_scripts/gather_parts.py"


rule extract_reference_frames:
    """Write a StyleGAN-V reference frame set (video folders of zero-padded jpg frames)."""
    input:
        manifest="resources/manifests/{dataset}.csv",
    output:
        frames=directory("resources/reference_frames/{dataset}_{frames}f"),
        index="resources/reference_frames/{dataset}_{frames}f.csv",
        quarantine="resources/reference_frames/{dataset}_{frames}f_quarantine.csv",
    log:
        "logs/extract_reference_frames/{dataset}_{frames}f.log",
    benchmark:
        "benchmarks/extract_reference_frames/{dataset}_{frames}f.tsv"
    conda:
        "../envs/echogen.yaml"
    threads: 1
    resources:
        mem_mb=tier_mem("cpu_chunk"),
        runtime=tier_runtime("cpu_chunk"),
    params:
        reference=config["derived"]["reference_frames"],
        seed=config["seed"],
        on_error=dataset_on_error,
    script:
        "../workflow_scripts/extract_reference_frames.py"


rule extract_cardiacnet_frames:
    """Write every CardiacNet frame as jpg for the downstream classifiers."""
    input:
        manifest="resources/manifests/cardiacnet.csv",
    output:
        frames=directory("resources/cardiacnet/frames"),
        index="resources/cardiacnet/frames.csv",
        quarantine="resources/cardiacnet/frames_quarantine.csv",
    log:
        "logs/extract_cardiacnet_frames/cardiacnet.log",
    conda:
        "../envs/echogen.yaml"
    threads: 1
    resources:
        mem_mb=tier_mem("cpu_chunk"),
        runtime=tier_runtime("cpu_chunk"),
    params:
        quality=config["derived"]["cardiacnet_frames"].get("quality", 95),
        on_error=on_error("cardiacnet"),
    script:
        "../workflow_scripts/extract_cardiacnet_frames.py"


rule compute_flow:
    """Compute Farneback optical flow for one chunk of a manifest's videos."""
    input:
        manifest="resources/manifests/{dataset}.csv",
    output:
        part=directory("resources/flow/{dataset}/part_{chunk}"),
    log:
        "logs/compute_flow/{dataset}_{chunk}.log",
    benchmark:
        "benchmarks/compute_flow/{dataset}_{chunk}.tsv"
    conda:
        "../envs/echogen.yaml"
    threads: 1
    resources:
        mem_mb=tier_mem("cpu_chunk"),
        runtime=tier_runtime("cpu_chunk"),
    params:
        flow=config["derived"]["flow"],
        n_chunks=chunks_of,
        on_error=dataset_on_error,
    script:
        "../workflow_scripts/compute_flow.py"


rule gather_flow:
    """Index optical-flow chunks."""
    input:
        parts=flow_parts,
    output:
        index="resources/flow/{dataset}/index.csv",
        quarantine="resources/flow/{dataset}/quarantine.csv",
    log:
        "logs/gather_flow/{dataset}.log",
    localrule: True
    conda:
        "../envs/echogen.yaml"
    script:
        "../workflow_scripts/gather_parts.py"
