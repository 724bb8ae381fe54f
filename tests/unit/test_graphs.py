"""GraphedCall off the GPU: a transparent pass-through (its replay is tested on CUDA in
test_sampling_cuda.py)."""

import torch

from echogen.models.graphs import GraphedCall


def test_graphed_call_runs_the_module_on_the_cpu_and_exposes_its_attributes():
    module = torch.nn.Linear(3, 2)
    graphed = GraphedCall(module)
    x = torch.randn(4, 3)
    torch.testing.assert_close(graphed(x), module(x))
    assert graphed.weight is module.weight and graphed.graph_count == 0


def test_graphed_call_is_eager_off_cuda_whatever_the_shapes():
    module = torch.nn.Linear(3, 2)
    graphed = GraphedCall(module, max_graphs=1)
    for rows in (1, 2, 3):
        x = torch.randn(rows, 3)
        torch.testing.assert_close(graphed(x), module(x))
    assert graphed.graph_count == 0
