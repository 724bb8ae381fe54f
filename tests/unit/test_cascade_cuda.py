"""EchoDiffusion's cascade sampler on a GPU: CUDA-graph replay of the UNets equals eager calls
and records one graph per stage and guidance branch (``sample_cascade(graphs=True)``)."""

from __future__ import annotations

import pytest
import torch

from echogen.models.cascade import build_cascade, cascade_preset, output_size
from echogen.pipelines.cascade_sampling import sample_cascade

pytestmark = pytest.mark.gpu


def _cascade():
    preset = cascade_preset("2SCM", "tiny")
    imagen = {**preset["imagen"], "num_sample_steps": [3, 3]}
    torch.manual_seed(0)
    return build_cascade(preset["unets"], imagen).cuda().eval(), output_size(imagen)


def _sample(cascade, size, seed, **kw):
    ef = torch.tensor([0.3, 0.6], device="cuda").reshape(2, 1, 1)
    conds = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1)).cuda()
    torch.manual_seed(seed)
    return sample_cascade(cascade, ef, conds, 8, 5.0, **kw)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_graph_replay_equals_eager_calls(precision):
    cascade, size = _cascade()
    eager = _sample(cascade, size, 3, precision=precision)
    graphed = _sample(cascade, size, 3, precision=precision, graphs=True)
    again = _sample(cascade, size, 3, precision=precision, graphs=True)
    counts = [unet.forward.graph_count for unet in cascade.unets]
    assert counts == [2, 2]  # each stage: its conditional and its unconditional call
    tolerance = 1e-4 if precision == "fp32" else 2e-2
    torch.testing.assert_close(graphed, eager, atol=tolerance, rtol=tolerance)
    torch.testing.assert_close(again, graphed, atol=0, rtol=0)
    other = _sample(cascade, size, 4, precision=precision, graphs=True)
    assert not torch.allclose(other, graphed)  # replays read the new noise, not the recorded
