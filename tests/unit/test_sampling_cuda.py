"""The LVDM sampling loop on a GPU: no host synchronisation inside the denoising loop,
CUDA-graph replay and torch.compile equal to eager calls, seeded device noise (PAPERS.md §4
sampler)."""

from __future__ import annotations

import pytest
import torch

from echogen.models.lvdm import LVDM, Conditioner, LVDMSpec, build_scheduler, build_unet
from echogen.models.lvdm_pipeline import LVDMPipeline
from echogen.models.vae import build_vae

pytestmark = pytest.mark.gpu


def _pipeline(scheduler: str) -> LVDMPipeline:
    torch.manual_seed(0)
    spec = LVDMSpec(conditioning="ef", frames=8, fps=32.0, latent_size=14, pad_to=16)
    unet = build_unet("tiny", "ef").cuda().eval()
    lvdm = LVDM(unet, spec, dict(build_scheduler().config), Conditioner(spec))
    pipe = LVDMPipeline.from_parts(lvdm, build_vae("tiny").cuda().eval(), scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _sample(pipe, k=2, **kw):
    conds = torch.randn(k, 4, 14, 14, generator=torch.Generator().manual_seed(1))
    gens = [torch.Generator(device="cuda").manual_seed(10 + i) for i in range(k)]
    kw = dict(frames=20, window=8, overlap=4, num_inference_steps=5, guidance_scale=2.0, **kw)
    values = [30.0 + 10 * i for i in range(k)]
    return pipe(conds, values, generator=gens, output_type="latent", **kw)


def _strict(iterable):
    """The timesteps, iterated with CUDA's sync debug mode on "error" while the loop runs."""
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield from iterable
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim", "dpm"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_denoising_loop_never_waits_for_the_gpu(scheduler, precision):
    pipe = _pipeline(scheduler)
    pipe.progress_bar = _strict  # the loop's body runs while _strict is suspended
    latents = _sample(pipe, precision=precision).latents
    assert latents.shape == (2, 20, 4, 14, 14) and torch.isfinite(latents).all()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_graph_replay_equals_eager_calls(precision):
    pipe = _pipeline("ddpm")
    eager = _sample(pipe, precision=precision).latents
    graphed = _sample(pipe, precision=precision, graphs=True).latents
    again = _sample(pipe, precision=precision, graphs=True).latents
    assert pipe._graphed.graph_count == 1  # one shape, recorded once, replayed after
    torch.testing.assert_close(graphed, eager, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(again, graphed, atol=0, rtol=0)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_compiled_unet_equals_eager_calls(precision):
    pipe = _pipeline("ddpm")
    eager = _sample(pipe, precision=precision).latents
    compiled = _sample(pipe, precision=precision, compile=True).latents
    first = pipe._compiled
    again = _sample(pipe, precision=precision, compile=True).latents
    assert pipe._compiled is first  # compiled once, kept by the pipeline
    tolerance = 1e-3 if precision == "fp32" else 5e-2
    torch.testing.assert_close(compiled, eager, atol=tolerance, rtol=tolerance)
    torch.testing.assert_close(again, compiled, atol=0, rtol=0)


def test_device_noise_is_seeded_per_video():
    pipe = _pipeline("ddpm")
    first, second = _sample(pipe).latents, _sample(pipe).latents
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    assert not torch.allclose(first[0], first[1])
