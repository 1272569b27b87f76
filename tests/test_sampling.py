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


def zero_snr_scheduler(**overrides) -> DDIMScheduler:
    from harivo.train.t2i_models import schedule

    return DDIMScheduler(**{**scheduler_config(), **schedule(True), **overrides})


def test_ddim_step_on_v_prediction_equals_diffusers():
    """Zero terminal SNR, v-prediction, trailing timesteps (t = 999 with ᾱ = 0 first): split_prediction + ddim_step
    == DDIMScheduler.step."""
    from harivo.sampling import split_prediction

    sched = zero_snr_scheduler()
    sched.set_timesteps(10)
    assert int(sched.timesteps[0]) == 999 and float(sched.alphas_cumprod[999]) == 0.0
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, 8, 8, generator=g)
    for t in sched.timesteps:
        v = torch.randn(x.shape, generator=g)
        ref = sched.step(v, t, x, eta=0.0).prev_sample
        prev = int(t) - 100
        a_prev = sched.alphas_cumprod[prev] if prev >= 0 else sched.final_alpha_cumprod
        x0, eps = split_prediction(x, v, sched.alphas_cumprod[int(t)], "v_prediction")
        ours, _ = ddim_step(x, eps, sched.alphas_cumprod[int(t)], a_prev, None, x0)
        assert torch.allclose(ours, ref, atol=1e-5, rtol=0)
        x = ref
    with pytest.raises(ValueError, match="prediction_type"):
        split_prediction(x, x, 0.5, "sample")


def test_mg_on_v_equals_mg_on_the_same_eps():
    """One sampling step with MG from v equals the step from the ε that v stands for (ᾱ well above the floor)."""
    from harivo.sampling import DDIMSchedule, sample_ddim, split_prediction

    x_t, eps, _ = mg_setup(f=5)
    ac = torch.linspace(0.9, 0.2, 1000, dtype=torch.float64)  # any schedule: ᾱ_999 = 0.2
    a = ac[999]
    v = (eps - (1 - a).sqrt() * x_t) / a.sqrt()  # the v whose ε is eps
    assert torch.allclose(split_prediction(x_t, v, a, "v_prediction")[1], eps)
    cfg, mg = CFGSchedule.constant(1.0), MGConfig(alpha=40.0)
    ts = torch.tensor([999])
    eps_schedule, v_schedule = DDIMSchedule(ts, ac, 1.0, 1000), DDIMSchedule(ts, ac, 1.0, 1000, "v_prediction")
    from_eps = sample_ddim(lambda x, t, s: eps, x_t, eps_schedule, cfg=cfg, mg=mg)
    from_v = sample_ddim(lambda x, t, s: v, x_t, v_schedule, cfg=cfg, mg=mg)
    no_mg = sample_ddim(lambda x, t, s: eps, x_t, eps_schedule, cfg=cfg, mg=None)
    assert torch.allclose(from_v, from_eps, atol=1e-9)
    assert (from_eps - no_mg).abs().max() > 1e-3  # MG did act


def test_mg_skips_steps_with_less_signal_than_sd_ever_leaves():
    """Below MG_MIN_ALPHA_PROD (zero-SNR's first steps: ᾱ_999 = 0, ᾱ_959 = 0.00038) MG changes nothing and reports
    zeros; SD v1's own schedule (ᾱ_999 = 0.00466) is never below it."""
    from harivo.sampling import MG_MIN_ALPHA_PROD, DDIMSchedule, sample_ddim

    assert float(DDIMScheduler(**scheduler_config()).alphas_cumprod[999]) > MG_MIN_ALPHA_PROD
    sched = zero_snr_scheduler()
    sched.set_timesteps(25)
    ac = sched.alphas_cumprod.double()
    x_t, v, _ = mg_setup(f=5)
    seen = []
    cfg = CFGSchedule.constant(1.0)
    for t in sched.timesteps[:4]:
        ts = t.view(1)
        schedule = DDIMSchedule(ts, ac, float(sched.final_alpha_cumprod), 1000, "v_prediction")
        with_mg = sample_ddim(lambda x, t, s: v, x_t, schedule, cfg=cfg, mg=MGConfig(alpha=40.0), callback=seen.append)
        without = sample_ddim(lambda x, t, s: v, x_t, schedule, cfg=cfg, mg=None)
        skipped = float(ac[int(t)]) < MG_MIN_ALPHA_PROD
        assert skipped == (int(t) in (999, 959, 919))
        assert torch.isfinite(with_mg).all()
        assert torch.equal(with_mg, without) == skipped
        assert (float(seen[-1].mg["g_norm"].abs().max()) == 0.0) == skipped
