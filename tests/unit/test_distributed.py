"""Multi-process training on CPU (echogen.workflow.run_distributed): a multi-GPU rule's path."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from trainer_cases import toy_latent_index

from echogen.workflow import distributed_processes, free_port, run_distributed


def test_processes_follow_the_declared_gpus():
    assert distributed_processes(0, "cpu") == 1
    assert distributed_processes(1, "cpu") == 1
    assert distributed_processes(3, "cpu") == 3  # fake or absent GPUs: N CPU processes
    assert 0 < free_port() < 65536


def _model(steps: int) -> dict:
    return {
        "conditioning": "ef",
        "preset": "tiny",
        "train_preset": "tiny",
        "frames": 8,
        "train": {"batch_size": 4, "max_steps": steps, "checkpoint_every": 2, "log_every": 1},
    }


@pytest.mark.e2e  # launches processes: ~20 s, out of the edit loop, in CI
def test_two_cpu_processes_train_the_same_model_as_one(tmp_path):
    """accelerate with 2 gloo processes splits each global batch; the weights match 1 process."""
    index = toy_latent_index(tmp_path, [12, 10, 9, 11])
    runs, losses = {}, {}
    for gpus in (1, 2):
        kwargs = {
            "latent_indexes": [str(index)],
            "out_dir": str(tmp_path / f"gpus{gpus}" / "model"),
            "state_dir": str(tmp_path / f"gpus{gpus}" / "state"),
            "model": _model(3),
            "seed": 5,
            "device": "cpu",
            "root": str(tmp_path),
        }
        run_distributed("echogen.training.lvdm:train_lvdm_from_config", kwargs, gpus, "cpu")
        model = tmp_path / f"gpus{gpus}" / "model"
        runs[gpus] = load_file(model / "unet" / "diffusion_pytorch_model.safetensors")
        losses[gpus] = pd.read_csv(model / "log.csv")["loss"].to_numpy()
        summary = json.loads((model / "train.json").read_text())
        assert summary["steps"] == 3
        assert summary["num_processes"] == gpus
    # Same global batches and draws: the first loss (identical weights) is the same number and
    # the later ones follow it. Weights agree within the 3 Adam steps of lr 1e-3: gloo sums the
    # gradients in another order, and Adam's first steps are ~lr * sign(grad), so a
    # near-zero gradient can flip an element's step.
    np.testing.assert_allclose(losses[2][0], losses[1][0], rtol=1e-5)
    np.testing.assert_allclose(losses[2], losses[1], rtol=1e-3)
    one, two = runs[1], runs[2]
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=3e-3)


@pytest.mark.e2e  # launches processes: ~20 s, out of the edit loop, in CI
def test_a_failing_process_fails_the_launch(tmp_path):
    kwargs = {
        "latent_indexes": [str(tmp_path / "missing.csv")],
        "out_dir": str(tmp_path / "model"),
        "state_dir": str(tmp_path / "state"),
        "model": _model(1),
        "seed": 0,
    }
    with pytest.raises(subprocess.CalledProcessError):
        run_distributed("echogen.training.lvdm:train_lvdm_from_config", kwargs, 2, "cpu")
    assert not (tmp_path / "model").exists()
