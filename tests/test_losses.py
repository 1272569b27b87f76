"""Losses on hand-computed inputs, and one training step that changes only what HARIVO trains."""

import math

import pytest
import torch
from diffusers import DDPMScheduler

from harivo.attention import recording, spatial_attention_names
from harivo.config import LossConfig
from harivo.train.losses import (NegativeQueue, dc_loss, draw_timesteps, reg_loss, simple_loss, timestep_weights,
                           training_step)
from harivo.noise import mixed_noise
from harivo.tiny import scheduler_config
from harivo.train.trs import TRSRecorder

from conftest import build_model


def test_simple_and_reg_hand_computed():
    eps = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 1, 2)
    noise = torch.zeros_like(eps)
    assert simple_loss(eps, noise).item() == pytest.approx((1 + 4 + 9 + 16) / 4)
    video = torch.stack([torch.ones(1, 2, 1, 2), 3 * torch.ones(1, 2, 1, 2)])  # (2, 1, 2, 1, 2)
    image = torch.zeros_like(video)
    t = torch.tensor([0, 750])
    # λ_t = 1 − t/T: 1 for t = 0 and 0.25 for t = 750; per-video mean squares 1 and 9
    assert reg_loss(video, image, t, 1000).item() == pytest.approx((1.0 * 1 + 0.25 * 9) / 2)


def test_dc_loss_hand_computed():
    z1 = torch.tensor([[2.0, 0.0]])  # normalised to (1, 0)
    z2 = torch.tensor([[1.0, 1.0]])  # (1/√2, 1/√2)
    negatives = torch.tensor([[0.0, 3.0], [-1.0, 0.0]])  # (0, 1) and (−1, 0)
    tau = 0.1
    expected = -(1 / math.sqrt(2)) / tau + math.log(math.exp(0 / tau) + math.exp(-1 / tau))
    assert dc_loss(z1, z2, negatives, tau).item() == pytest.approx(expected, rel=1e-6)
    # empty queue: alignment term only
    assert dc_loss(z1, z2, torch.zeros(0, 2), tau).item() == pytest.approx(-(1 / math.sqrt(2)) / tau, rel=1e-6)
    # decoupled: the positive is not in the denominator, so identical positives and far negatives go below −1/τ + log|Q|
    far = dc_loss(z1, z1, -z1.repeat(4, 1), tau).item()
    assert far == pytest.approx(-1 / tau + math.log(4 * math.exp(-1 / tau)), rel=1e-6)


def test_dc_loss_in_batch_negatives_hand_computed():
    # two videos; row 0's negatives = the queue + row 1's z1 and z2 (never its own pair)
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # (1, 0), (0, 1)
    z2 = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # (1, 0), (−1, 0)
    queue = torch.tensor([[1.0, 1.0]])  # (1/√2, 1/√2)
    tau, r = 0.5, 1 / math.sqrt(2)
    row0 = -1 / tau + math.log(math.exp(r / tau) + math.exp(0 / tau) + math.exp(-1 / tau))
    row1 = -0 / tau + math.log(math.exp(r / tau) + math.exp(0 / tau) + math.exp(0 / tau))
    assert dc_loss(z1, z2, queue, tau, in_batch=True).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    # without in-batch negatives only the queue counts
    plain = (-1 / tau + r / tau + 0 + r / tau) / 2
    assert dc_loss(z1, z2, queue, tau).item() == pytest.approx(plain, rel=1e-6)
    # one video: nothing else in the batch, the same as the queue alone
    assert dc_loss(z1[:1], z2[:1], queue, tau, in_batch=True).item() == pytest.approx(-1 / tau + r / tau, rel=1e-6)


def test_dc_loss_in_batch_penalises_collapse():
    # the collapse the queue alone rewarded: every current z on one new direction, far from stale negatives
    c = torch.tensor([[0.0, 1.0]]).repeat(4, 1)
    stale = torch.tensor([[0.0, -1.0]]).repeat(8, 1)
    spread = torch.tensor([[1.0, 0], [-1.0, 0], [0, 1.0], [0, -1.0]])
    tau = 0.1
    assert dc_loss(c, c, stale, tau).item() < dc_loss(spread, spread, stale, tau).item()  # queue alone: collapse wins
    assert dc_loss(c, c, stale, tau, in_batch=True).item() > dc_loss(spread, spread, stale, tau, in_batch=True).item() + 5


def test_negative_queue_fifo():
    q = NegativeQueue(size=3, dim=2)
    q.push(torch.tensor([[1.0, 0], [2.0, 0]]))
    q.push(torch.tensor([[3.0, 0], [4.0, 0]]))
    assert q.get()[:, 0].tolist() == [3.0, 4.0, 1.0]  # newest first, oldest dropped
    q2 = NegativeQueue(3, 2)
    q2.load_state_dict(q.state_dict())
    assert torch.equal(q2.get(), q.get())


def test_trs_recorder_hand_computed():
    names = ["up_blocks.0.attentions.0.transformer_blocks.0.attn1.processor", "up_blocks.1.attentions.0.transformer_blocks.0.attn1.processor"]
    rec = TRSRecorder(names, num_frames=3)
    # one video, 3 frames, 1 head, 2 queries, 2 keys
    a = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]], [[[0.0, 1.0], [0.5, 0.5]]], [[[0.0, 1.0], [1.0, 0.0]]]])
    rec.record(names[0], a)
    rec.record(names[1], a * 0)  # all-zero maps add nothing
    # frame pairs: |A2 − A1| mean = (1 + 1 + 0 + 0)/4 = 0.5; |A3 − A2| mean = (0 + 0 + .5 + .5)/4 = 0.25; λ_1 = 1/2
    assert rec.loss().item() == pytest.approx(0.5 * (0.5 + 0.25))


def test_trs_layers_are_decoder_spatial_self_attention(tiny):
    model = build_model(tiny)
    names = spatial_attention_names(model.unet, "attn1", decoder_only=True)
    assert names and all(n.startswith("up_blocks.") and ".attentions." in n and n.endswith("attn1.processor") for n in names)
    assert not any("motion_modules" in n for n in names)


def test_attention_probabilities_keep_gradients_and_sum_to_one(tiny):
    model = build_model(tiny)
    names = spatial_attention_names(model.unet, "attn1", decoder_only=True)

    class Keep:
        def __init__(self):
            self.maps = []

        def record(self, name, probs):
            self.maps.append(probs)

    with recording(model.unet, names, Keep()) as rec:
        model(torch.randn(1, 4, 3, 8, 8), 10, torch.randn(1, 77, 16))
    assert len(rec.maps) == len(names)
    for m in rec.maps:
        assert m.requires_grad
        assert torch.allclose(m.sum(-1), torch.ones(()), atol=1e-5)


def make_batch(seed=0, b=2, f=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 4, f, 8, 8, generator=g), torch.randn(b, 77, 16, generator=g)


def run_steps(model, n, cfg, seed=0, lr=1e-3):
    head = model.make_projection_head()
    queue = NegativeQueue(cfg.dc_queue_size, head.channels)
    params = model.trainable_parameters() + list(head.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    sched = DDPMScheduler(**{k: v for k, v in scheduler_config().items() if k not in ("set_alpha_to_one", "clip_sample")})
    latents, text = make_batch()
    losses = []
    for i in range(n):
        out = training_step(model, latents, text, sched, cfg, head, queue, torch.Generator().manual_seed(seed))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out)
    return losses, queue


def test_training_step_changes_only_trainable_parameters(tiny):
    model = build_model(tiny)
    frozen = {n: p.detach().clone() for n, p in tiny.unet.named_parameters()}
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    outs, queue = run_steps(model, 2, LossConfig())
    assert set(outs[0].terms) == {"simple", "trs", "reg", "dc", "total"}
    for n, p in tiny.unet.named_parameters():
        assert torch.equal(p, frozen[n]), f"T2I weight {n} changed"
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, trainable[n])]
    assert any("motion_modules" in n for n in changed)
    assert any(n.startswith("mapping_network.") for n in changed)
    assert any(n.startswith("frame_token_generator.") for n in changed)
    assert queue.get().shape[0] == 2 * 2 * 2  # two positives per video, two videos, two steps
    t = outs[0].terms
    assert t["total"] == pytest.approx(t["simple"] + 0.1 * (t["trs"] + t["reg"] + t["dc"]), rel=1e-5)


def test_training_lowers_the_loss_on_a_fixed_batch(tiny):
    model = build_model(tiny)
    outs, _ = run_steps(model, 12, LossConfig(use_dc=False), lr=3e-3)
    assert outs[-1].terms["total"] < outs[0].terms["total"]


@pytest.mark.parametrize("center", [True, False])
def test_dc_ignores_an_hspace_offset_shared_by_the_batch_when_centred(tiny, center):
    """The runaway of the first shapes-world runs: a constant added to h-space. Centred, L_DC cannot see it."""
    model = build_model(tiny, use_mapping=False, use_frame_tokens=False)
    cfg = LossConfig(use_trs=False, use_reg=False, dc_center_h=center)
    head = model.make_projection_head()
    sched = DDPMScheduler(**{k: v for k, v in scheduler_config().items() if k not in ("set_alpha_to_one", "clip_sample")})
    latents, text = make_batch()
    queue = NegativeQueue(cfg.dc_queue_size, head.channels)
    queue.push(torch.randn(6, head.channels, generator=torch.Generator().manual_seed(1)))

    def dc(offset):
        hook = model.unet.mid_block.register_forward_hook(lambda _m, _i, out: out + offset)
        try:
            q = NegativeQueue(queue.size, queue.dim)
            q.load_state_dict(queue.state_dict())
            return training_step(model, latents, text, sched, cfg, head, q, torch.Generator().manual_seed(0)).terms["dc"]
        finally:
            hook.remove()

    offset = 30 * torch.randn(1, head.channels, 1, 1, generator=torch.Generator().manual_seed(2))
    if center:
        assert dc(offset) == pytest.approx(dc(0.0), rel=1e-4, abs=1e-4)
    else:
        assert abs(dc(offset) - dc(0.0)) > 1e-2


def test_terms_switch_off(tiny):
    model = build_model(tiny, use_mapping=False, use_frame_tokens=False)
    cfg = LossConfig(use_trs=False, use_reg=False, use_dc=False)
    outs, _ = run_steps(model, 1, cfg)
    assert set(outs[0].terms) == {"simple", "total"}
    assert outs[0].terms["total"] == pytest.approx(outs[0].terms["simple"])
    assert not any(type(p).__name__ == "RecordingAttnProcessor" for p in model.unet.attn_processors.values())


def test_reg_is_zero_when_motion_outputs_are_zero_and_tokens_off(tiny):
    model = build_model(tiny, use_frame_tokens=False)
    with torch.no_grad():
        for name, p in model.unet.named_parameters():
            if "motion_modules" in name and "proj_out" in name:
                p.zero_()
    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    latents, text = make_batch(1)
    out = training_step(model, latents, text, sched, LossConfig(use_dc=False, use_trs=False), generator=torch.Generator().manual_seed(0))
    assert out.terms["reg"] < 1e-10
    assert out.terms["simple"] > 0.1


class _RecordingScheduler(DDPMScheduler):
    """DDPMScheduler that keeps the (noise, timesteps) of its last add_noise call."""

    def add_noise(self, original, noise, timesteps):
        self.seen = (noise.clone(), timesteps.clone())
        return super().add_noise(original, noise, timesteps)


def recorded_step(tiny, b: int = 2, **loss) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(latents, noise, timesteps) of one L_simple training step with generator seed 3 and these LossConfig fields."""
    model = build_model(tiny, use_frame_tokens=False, use_mapping=False)
    sched = _RecordingScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                beta_schedule="scaled_linear")
    latents, text = make_batch(b)
    cfg = LossConfig(use_trs=False, use_reg=False, use_dc=False, **loss)
    training_step(model, latents, text, sched, cfg, generator=torch.Generator().manual_seed(3))
    return latents, *sched.seen


@pytest.mark.parametrize("offset", [0.0, 0.5])
def test_noise_offset_is_one_constant_per_video_channel_and_frame(tiny, offset):
    latents, noise, t = recorded_step(tiny, noise_offset=offset)
    gen = torch.Generator().manual_seed(3)  # the stream: noise, timesteps, then (only with an offset) the offsets
    base = torch.randn(latents.shape, generator=gen)
    assert torch.equal(t, torch.randint(0, 1000, (latents.shape[0],), generator=gen))
    if offset == 0:
        assert torch.equal(noise, base)  # runs without offset noise keep their exact random stream
    else:
        expected = offset * torch.randn(*latents.shape[:3], 1, 1, generator=gen)
        torch.testing.assert_close(noise - base, expected.expand_as(base), rtol=0, atol=1e-6)
        d = noise - base  # one constant per (video, channel, frame), different between frames
        assert torch.allclose(d, d[..., :1, :1].expand_as(d))
        assert not torch.allclose(d[:, :, 0], d[:, :, 1])


def test_min_timestep_draws_from_the_top_of_the_schedule_only(tiny):
    model = build_model(tiny, use_frame_tokens=False, use_mapping=False)
    sched = _RecordingScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                beta_schedule="scaled_linear")
    latents, text = make_batch(b=8)
    cfg = LossConfig(use_trs=False, use_reg=False, use_dc=False, min_timestep=900)
    training_step(model, latents, text, sched, cfg, generator=torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)
    torch.randn(latents.shape, generator=gen)
    assert torch.equal(sched.seen[1], torch.randint(900, 1000, (8,), generator=gen))
    assert sched.seen[1].min() >= 900
    with pytest.raises(ValueError, match="min_timestep"):
        LossConfig(min_timestep=1000).validate()
    with pytest.raises(ValueError, match="min_timestep: expected 0 <= min_timestep < 10"):
        short = _RecordingScheduler(num_train_timesteps=10)
        training_step(model, latents, text, short, LossConfig(use_trs=False, use_reg=False, use_dc=False,
                                                              min_timestep=50), generator=torch.Generator())


@pytest.mark.parametrize("share", [0.0, 0.36])
def test_noise_share_mixes_one_draw_common_to_the_frames(tiny, share):
    """PYoCo's mixed noise: after the noise and timesteps, one (b, c, 1, h, w) draw is mixed in as
    √(1−s)·ε + √s·ε₀; share 0 keeps the exact random stream."""
    latents, noise, _ = recorded_step(tiny, noise_share=share)
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(latents.shape, generator=gen)
    torch.randint(0, 1000, (latents.shape[0],), generator=gen)
    if share == 0:
        assert torch.equal(noise, base)
        return
    b, c, f, h, w = latents.shape
    common = torch.randn((b, c, 1, h, w), generator=gen)
    torch.testing.assert_close(noise, 0.8 * base + 0.6 * common.expand_as(base), rtol=0, atol=1e-6)


def test_mixed_noise_frames_correlate_by_the_share_and_keep_unit_variance():
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(16, 4, 8, 16, 16, generator=gen)
    mixed = mixed_noise(noise, 0.5, gen)
    assert abs(mixed.var().item() - 1) < 0.02
    frames = mixed.transpose(1, 2).reshape(16, 8, -1).transpose(0, 1).reshape(8, -1)  # (f, everything else)
    corr = torch.corrcoef(frames)
    off_diagonal = corr[~torch.eye(8, dtype=torch.bool)]
    assert abs(off_diagonal.mean().item() - 0.5) < 0.02 and off_diagonal.std().item() < 0.02
    assert mixed_noise(noise, 0.0, gen) is noise
    with pytest.raises(ValueError, match="noise: expected a .b, c, f, h, w. video tensor"):
        mixed_noise(noise[:, :, 0], 0.5, gen)


@pytest.mark.parametrize("share", [-0.1, 1.0, float("nan")])
def test_noise_share_must_be_a_fraction_below_one(share):
    from harivo.config import HarivoConfig

    with pytest.raises(ValueError, match="noise_share"):
        LossConfig(noise_share=share).validate()
    with pytest.raises(ValueError, match="noise_share"):
        HarivoConfig(noise_share=share).validate()


def test_timestep_bias_draws_the_last_portion_multiplier_times_as_often():
    """diffusers' "later" timestep bias: weights 1, the last int(portion · T) weigh the multiplier; 9× on the last
    10 % puts half of the draws there. Multiplier 1 is the plain uniform draw, same stream."""
    weights = timestep_weights(1000, 9.0, 0.1)
    assert weights[:900].eq(1).all() and weights[900:].eq(9).all()
    gen = torch.Generator().manual_seed(0)
    t = draw_timesteps(LossConfig(timestep_bias_multiplier=9.0), 1000, 20000, gen)
    assert t.min() >= 0 and t.max() <= 999
    assert abs((t >= 900).float().mean().item() - 0.5) < 0.02
    assert abs((t < 450).float().mean().item() - 0.25) < 0.02  # below, still uniform
    late = draw_timesteps(LossConfig(timestep_bias_multiplier=9.0, min_timestep=500), 1000, 20000, gen)
    assert late.min() >= 500 and abs((late >= 900).float().mean().item() - 900 / 1300) < 0.02  # 100·9 of 400 + 100·9
    plain = draw_timesteps(LossConfig(), 1000, 8, torch.Generator().manual_seed(5))
    assert torch.equal(plain, torch.randint(0, 1000, (8,), generator=torch.Generator().manual_seed(5)))
    for bad in (dict(timestep_bias_multiplier=0.0), dict(timestep_bias_portion=1.5)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            LossConfig(**bad).validate()


def test_noise_offset_must_be_non_negative():
    with pytest.raises(ValueError, match="noise_offset"):
        LossConfig(noise_offset=-0.1).validate()


def test_simple_loss_regresses_v_on_a_v_prediction_base(tiny):
    """On a zero-terminal-SNR base L_simple is ‖v − v_θ‖²: recomputed by hand from the recorded noise and t."""
    from harivo.train.t2i_models import schedule

    model = build_model(tiny, use_frame_tokens=False, use_mapping=False)
    latents, text = make_batch(2)
    cfg = LossConfig(use_trs=False, use_reg=False, use_dc=False)
    terms = {}
    for zero_snr in (False, True):
        sched = _RecordingScheduler(**schedule(zero_snr))
        with torch.no_grad():
            terms[zero_snr] = training_step(model, latents, text, sched, cfg,
                                            generator=torch.Generator().manual_seed(3)).terms["simple"]
            noise, t = sched.seen
            pred = model(sched.add_noise(latents, noise, t), t, text)
        a = sched.alphas_cumprod[t].view(-1, 1, 1, 1, 1)
        target = a.sqrt() * noise - (1 - a).sqrt() * latents if zero_snr else noise
        assert terms[zero_snr] == pytest.approx(float((pred - target).pow(2).mean()), rel=1e-5)
    assert terms[True] != pytest.approx(terms[False], rel=1e-2)
