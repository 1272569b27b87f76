"""The noise of diffusion, shared by sampling and training: the model's target under its scheduler, offset noise,
and the mixed (frame-correlated) noise prior."""

from __future__ import annotations

import math

import torch

from .sampling import PREDICTION_TYPES


def prediction_target(scheduler, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """The model's training target under `scheduler.config.prediction_type`: the noise (epsilon) or
    v = sqrt(a) noise - sqrt(1 - a) x0 (v_prediction, `scheduler.get_velocity`)."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(x0, noise, timesteps)
    raise ValueError(f"prediction_type: expected one of {list(PREDICTION_TYPES)}, got {kind!r}")


def offset_noise(noise: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """`noise` + strength · N(0, 1), one draw per index of every axis but the last two (spatial) ones: per
    (sample, channel) for images (b, c, h, w), per (video, channel, frame) for videos (b, c, f, h, w). Offset noise
    (diffusers' --noise_offset; ours, not the paper's), see `config.LossConfig.noise_offset`."""
    offset = torch.randn(*noise.shape[:-2], 1, 1, generator=generator, dtype=noise.dtype)
    return noise + strength * offset.to(noise.device)


def mixed_noise(noise: torch.Tensor, share: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """PYoCo's mixed noise prior (Ge et al. 2023, ours here): √(1−s)·noise + √s·ε₀ with one ε₀ per (video, channel,
    pixel) drawn from `generator` after `noise` and shared by the frames (axis 2 of (b, c, f, h, w)). Each element
    keeps unit variance; two frames' noises correlate by s. share 0 returns `noise` itself (no draw)."""
    if not share:
        return noise
    if noise.ndim != 5:
        raise ValueError(f"noise: expected a (b, c, f, h, w) video tensor, got shape {tuple(noise.shape)}")
    b, c, _, h, w = noise.shape
    common = torch.randn((b, c, 1, h, w), generator=generator, dtype=noise.dtype,
                         device=generator.device if generator is not None else noise.device).to(noise.device)
    return math.sqrt(1.0 - share) * noise + math.sqrt(share) * common
