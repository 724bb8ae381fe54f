"""CUDA-graph replay of a fixed-shape model call (the sampling loop's denoiser).

A sampling loop calls its denoiser with the same shapes at every step; on a GPU each call
launches hundreds of small kernels, and at small batches the launches, not the arithmetic,
set the pace. :class:`GraphedCall` records the call once per input signature into a
``torch.cuda.CUDAGraph`` and then replays it: inputs are copied into the recorded (static)
tensors, the graph runs, and the recorded outputs are returned. On the CPU, or where a
recording fails, it calls the model as it is.

The returned tensors are the graph's own buffers: the next replay overwrites them, so a
caller copies what it keeps before calling again (the sampling loop's guidance and stitching
write new tensors from them; ``.float()`` of a float32 output would not copy).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)


class GraphedCall:
    """Replay ``module``'s call from one CUDA graph per input signature.

    Args:
        module: the model (its ``dtype``, ``device`` and ``config`` stay visible through
            this wrapper, so code written for the model takes the wrapper as it is).
        warmup: eager calls on a side stream before recording (cuDNN / cuBLAS pick their
            kernels and workspaces there, not inside the graph).

    The signature is the shapes, dtypes and devices of the tensor arguments, the other
    arguments' values, and the autocast state; a call with a new signature records a new
    graph, up to ``max_graphs`` (each holds its own memory pool), after which new signatures
    run eager. Only CUDA calls are recorded, and never under an autocast that caches its
    casts (the cache dies with the context; the graph would replay freed memory).
    """

    def __init__(self, module: torch.nn.Module, warmup: int = 2, max_graphs: int = 8):
        self.module, self.warmup, self.max_graphs = module, warmup, max_graphs
        self._graphs: dict[tuple, tuple] = {}
        self._eager: set[tuple] = set()

    def __getattr__(self, name: str):
        return getattr(self.module, name)

    @property
    def graph_count(self) -> int:
        """How many signatures have a recorded graph."""
        return len(self._graphs)

    def __call__(self, *args, **kwargs):
        tensors = [a for a in (*args, *kwargs.values()) if torch.is_tensor(a)]
        if not tensors or tensors[0].device.type != "cuda":
            return self.module(*args, **kwargs)
        key = _signature(args, kwargs)
        cached_casts = torch.is_autocast_enabled("cuda") and torch.is_autocast_cache_enabled()
        if key in self._eager or (key not in self._graphs and cached_casts):
            return self.module(*args, **kwargs)
        if key not in self._graphs and len(self._graphs) >= self.max_graphs:
            log.warning("%d CUDA graphs recorded already; this call shape runs eager",
                        len(self._graphs))  # fmt: skip
            self._eager.add(key)
            return self.module(*args, **kwargs)
        if key not in self._graphs:
            try:
                self._graphs[key] = _record(self.module, args, kwargs, self.warmup)
            except RuntimeError as error:  # an op that cannot be recorded: stay eager
                log.warning("CUDA graph recording failed (%s); this call shape runs eager", error)
                self._eager.add(key)
                return self.module(*args, **kwargs)
        graph, static_args, static_kwargs, output = self._graphs[key]
        _copy_into(static_args, args)
        _copy_into(list(static_kwargs.values()), list(kwargs.values()))
        graph.replay()
        return output


def _signature(args, kwargs) -> tuple:
    def describe(value):
        if torch.is_tensor(value):
            return ("tensor", tuple(value.shape), value.dtype, str(value.device))
        return ("value", repr(value))

    autocast = (
        torch.is_autocast_enabled("cuda"),
        torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None,
    )
    return (
        tuple(describe(a) for a in args),
        tuple((k, describe(v)) for k, v in sorted(kwargs.items())),
        autocast,
    )


def _static(value):
    return value.detach().clone().contiguous() if torch.is_tensor(value) else value


def _copy_into(statics, values) -> None:
    for static, value in zip(statics, values, strict=True):
        if torch.is_tensor(static):
            static.copy_(value)


def _record(module: Callable, args, kwargs, warmup: int) -> tuple:
    static_args = [_static(a) for a in args]
    static_kwargs = {k: _static(v) for k, v in kwargs.items()}
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            module(*static_args, **static_kwargs)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        output = module(*static_args, **static_kwargs)
    return graph, static_args, static_kwargs, output
