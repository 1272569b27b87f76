"""The oracle (docs/design.md §3): with mapping, frame tokens and MG off and constant CFG, HARIVO == AnimateDiffPipeline."""

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffPipeline, DDIMScheduler

from harivo.pipeline import GenerationSettings
from harivo.sampling import CFGSchedule, MGConfig

from conftest import build_pipeline

PROMPT = "a red circle is moving left to right on a gray background"


ORACLE_SETTINGS = GenerationSettings(PROMPT, seed=3, num_frames=5, num_inference_steps=4,
                                     cfg=CFGSchedule.constant(7.5), mg=MGConfig(enabled=False), use_mapping=False,
                                     use_frame_tokens=False)


def animatediff_frames(tiny, pipe) -> np.ndarray:
    """Stock AnimateDiffPipeline's frames of ORACLE_SETTINGS on `pipe`'s UNet and scheduler config."""
    ad = AnimateDiffPipeline(
        vae=tiny.vae, text_encoder=tiny.text_encoder, tokenizer=tiny.tokenizer, unet=pipe.model.unet,
        motion_adapter=tiny.motion_adapter, scheduler=DDIMScheduler(**pipe.scheduler.config),
    )
    ad.set_progress_bar_config(disable=True)
    return ad(PROMPT, num_frames=5, num_inference_steps=4, guidance_scale=7.5,
              generator=torch.Generator().manual_seed(3), output_type="np").frames[0]


def test_matches_animatediff_pipeline(tiny):
    pipe = build_pipeline(tiny)
    expected = animatediff_frames(tiny, pipe)
    settings = ORACLE_SETTINGS
    out = pipe(settings)
    assert out.frames.shape == expected.shape == (5, 16, 16, 3)
    assert np.abs(out.frames - expected).max() <= 1e-4
    # the initial noise is AnimateDiff's too: different seed, different video
    other = pipe(GenerationSettings(**{**settings.__dict__, "seed": 4}))
    assert np.abs(other.frames - expected).max() > 1e-3


def test_matches_animatediff_pipeline_on_a_zero_snr_v_prediction_base(tiny):
    """The oracle on a zero-terminal-SNR, v-prediction, trailing-timestep scheduler (`t2i_models.schedule(True)`)."""
    from harivo.pipeline import HarivoPipeline
    from harivo.train.t2i_models import schedule

    pipe = build_pipeline(tiny)
    sched = DDIMScheduler(**{**tiny.scheduler.config, **schedule(True)})
    pipe = HarivoPipeline(tiny.vae, tiny.text_encoder, tiny.tokenizer, pipe.model, sched)
    expected = animatediff_frames(tiny, pipe)
    settings = ORACLE_SETTINGS
    out = pipe(settings)
    assert np.abs(out.frames - expected).max() <= 1e-4
    eps_out = build_pipeline(tiny)(settings)  # the same weights read as ε give another video
    assert np.abs(out.frames - eps_out.frames).max() > 1e-3
    with_mg = pipe(GenerationSettings(**{**settings.__dict__, "mg": MGConfig(alpha=40.0)}))
    assert np.isfinite(with_mg.frames).all()
    assert [s["g_norm"] == 0 for s in with_mg.steps[:2]] == [True, False]  # t = 999 skipped (ᾱ = 0), 749 not


def test_mixed_noise_prior_is_the_stock_draw_plus_one_shared_by_the_frames(tiny):
    """A model trained with PYoCo's mixed noise (config.noise_share) starts from that prior: AnimateDiff's draw,
    then one (1, c, 1, h, w) draw from the same generator, mixed √(1−s)·ε + √s·ε₀. Given those latents, stock
    AnimateDiffPipeline makes the same video (the prior is the only difference)."""
    pipe = build_pipeline(tiny, noise_share=0.36)
    latents = pipe.prepare_latents(3, 5, 16, 16)
    gen = torch.Generator().manual_seed(3)
    stock = torch.randn(latents.shape, generator=gen)
    common = torch.randn((*latents.shape[:2], 1, *latents.shape[3:]), generator=gen)
    torch.testing.assert_close(latents, 0.8 * stock + 0.6 * common.expand_as(stock), rtol=0, atol=1e-6)
    out = pipe(ORACLE_SETTINGS)
    ad = AnimateDiffPipeline(
        vae=tiny.vae, text_encoder=tiny.text_encoder, tokenizer=tiny.tokenizer, unet=pipe.model.unet,
        motion_adapter=tiny.motion_adapter, scheduler=DDIMScheduler(**pipe.scheduler.config),
    )
    ad.set_progress_bar_config(disable=True)
    expected = ad(PROMPT, num_frames=5, num_inference_steps=4, guidance_scale=7.5, latents=latents,
                  output_type="np").frames[0]
    assert np.abs(out.frames - expected).max() <= 1e-4
    assert np.abs(out.frames - animatediff_frames(tiny, pipe)).max() > 1e-3  # the plain prior: another video
