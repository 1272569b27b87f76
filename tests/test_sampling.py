"""DDIM step == DDIMScheduler.step; MG (Algorithm 1) == −ω ∇ of Eq. 7's one-sided term; CFG schedule."""

import math

import pytest
import torch
from diffusers import DDIMScheduler

from harivo.sampling import CFGSchedule, MGConfig, ddim_step, mitigating_gradient, predict_x0
from harivo.tiny import scheduler_config


@pytest.mark.parametrize("clip", [False, True])
def test_ddim_step_equals_diffusers(clip):
    sched = DDIMScheduler(**{**scheduler_config(), "clip_sample": clip, "clip_sample_range": 1.0})
    sched.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, 8, 8, generator=g)
    step = sched.config.num_train_timesteps // 10
    for t in sched.timesteps:
        eps = torch.randn(x.shape, generator=g)
        ref = sched.step(eps, t, x, eta=0.0).prev_sample
        prev = int(t) - step
        a_prev = sched.alphas_cumprod[prev] if prev >= 0 else sched.final_alpha_cumprod
        ours, _ = ddim_step(x, eps, sched.alphas_cumprod[int(t)], a_prev, 1.0 if clip else None)
        assert torch.allclose(ours, ref, atol=1e-6, rtol=0)
        x = ref


def one_sided_eq7(x0: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Σ_j exp(−‖x̂_j − x̂_{j−1}‖²/S) with the earlier frame held constant (the one-sided term of Eq. 7)."""
    d = x0[:, :, 1:] - x0[:, :, :-1].detach()
    return torch.exp(-d.pow(2).sum(dim=(1, 3, 4)) / s[:, None]).sum()


def full_eq7(x0: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    d = x0[:, :, 1:] - x0[:, :, :-1]
    return torch.exp(-d.pow(2).sum(dim=(1, 3, 4)) / s[:, None]).sum()


def mg_setup(seed=0, f=6):
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn(2, 4, f, 5, 5, generator=g, dtype=torch.float64)
    eps = torch.randn(x_t.shape, generator=g, dtype=torch.float64)
    a = torch.tensor(0.3, dtype=torch.float64)
    return x_t, eps, a


@pytest.mark.parametrize("symmetric,phi", [(False, one_sided_eq7), (True, full_eq7)])
def test_mg_equals_autograd_of_eq7(symmetric, phi):
    x_t, eps, a = mg_setup()
    alpha = 40.0
    new_eps, diag = mitigating_gradient(eps, x_t, a, alpha, symmetric=symmetric)
    g_closed = (new_eps - eps) / alpha
    # autograd: −ω ∇_{x̂} Φ with S = median‖D‖² / log(F−1) held constant (Algorithm 1, line 3)
    x0 = predict_x0(x_t, eps, a).requires_grad_(True)
    d_norm = (x0[:, :, 1:] - x0[:, :, :-1]).pow(2).sum(dim=(1, 3, 4)).sqrt().detach()
    s = d_norm.median(dim=1).values ** 2 / math.log(x_t.shape[2] - 1)
    (grad,) = torch.autograd.grad(phi(x0, s), x0)
    omega = ((1 - a) / a) ** 0.5
    assert torch.allclose(g_closed, -omega * grad, atol=1e-10)
    assert torch.allclose(diag["s"], s)
    if not symmetric:
        assert torch.equal(g_closed[:, :, 0], torch.zeros_like(g_closed[:, :, 0]))  # concat(0, G)


def test_mg_pulls_frames_together():
    x_t, eps, a = mg_setup(1)
    new_eps, _ = mitigating_gradient(eps, x_t, a, alpha=40.0)
    before = predict_x0(x_t, eps, a)
    after = predict_x0(x_t, new_eps, a)
    diff = lambda x: (x[:, :, 1:] - x[:, :, :-1]).pow(2).sum()
    assert diff(after) < diff(before)


def test_mg_alpha_zero_and_identical_frames_are_no_ops():
    x_t, eps, a = mg_setup(2)
    out, _ = mitigating_gradient(eps, x_t, a, alpha=0.0)
    assert torch.equal(out, eps)
    # a video of identical frames: D = 0, S = 0 → unchanged, no NaN
    still_x = x_t[:, :, :1].expand_as(x_t).clone()
    still_eps = eps[:, :, :1].expand_as(eps).clone()
    out, diag = mitigating_gradient(still_eps, still_x, a, alpha=40.0)
    assert torch.equal(out, still_eps)
    assert torch.equal(diag["s"], torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("f", [1, 2])
def test_mg_guard_few_frames(f):
    x_t, eps, a = mg_setup(3, f=f)
    out, _ = mitigating_gradient(eps, x_t, a, alpha=40.0)
    assert torch.equal(out, eps)


def test_mg_is_per_video():
    x_t, eps, a = mg_setup(4)
    both, _ = mitigating_gradient(eps, x_t, a, 40.0)
    first, _ = mitigating_gradient(eps[:1], x_t[:1], a, 40.0)
    assert torch.allclose(both[:1], first, atol=1e-12)


def test_cfg_schedule():
    cfg = CFGSchedule(high=12.5, low=7.5, switch=0.7)
    assert cfg.scale(999) == 12.5 and cfg.scale(701) == 12.5
    assert cfg.scale(700) == 7.5 and cfg.scale(1) == 7.5
    assert CFGSchedule.constant(5.0).scales([999, 500, 1]) == [5.0, 5.0, 5.0]
    with pytest.raises(ValueError, match="cfg_switch"):
        CFGSchedule(switch=1.5).validate()
    with pytest.raises(ValueError, match="alpha"):
        MGConfig(alpha=float("nan")).validate()
    with pytest.raises(ValueError, match="alpha"):
        MGConfig(alpha=-1.0).validate()
