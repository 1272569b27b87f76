"""The speed-ups of issue 6 compute the same functions as the plain code they replaced: values and gradients."""

import pytest
import torch
from diffusers import DDPMScheduler
from diffusers.models.attention_processor import AttnProcessor2_0

from harivo.attention import recording, spatial_attention_names
from harivo.config import LossConfig
from harivo.train.losses import reg_loss, simple_loss, training_step
from harivo.modules import LowRankSelfAttnProcessor, MappingNetwork, conv3d_by_frames
from harivo.tiny import scheduler_config
from harivo.train.trs import TRSRecorder, frame_difference_l1

from conftest import build_model


def plain_frame_difference(maps: torch.Tensor) -> torch.Tensor:
    """The autograd formula `TRSRecorder` used before: Σ_j mean|A^(j) − A^(j−1)|."""
    dims = tuple(i for i in range(maps.ndim) if i != 1)
    return (maps[:, 1:] - maps[:, :-1]).abs().mean(dim=dims).sum()


class PlainTRSRecorder(TRSRecorder):
    """The previous L_TRS recording: layer output from SDPA, loss by the autograd formula."""

    output_from_probs = False

    def record(self, name, probs):
        maps = probs.reshape(probs.shape[0] // self.f, self.f, *probs.shape[1:])
        self.terms[name] = self.terms.get(name, 0) + plain_frame_difference(maps)


def grads(loss, params):
    return torch.autograd.grad(loss, params, allow_unused=True)


def assert_close_grads(a, b, rtol=1e-4, atol=1e-6):
    for x, y in zip(a, b):
        assert (x is None) == (y is None)
        if x is not None:
            torch.testing.assert_close(x, y, rtol=rtol, atol=atol)


@pytest.mark.parametrize("shape", [(2, 5, 3, 7, 7), (1, 2, 1, 4, 4), (3, 3, 2, 5, 6), (2, 1, 2, 3, 3)])
def test_frame_difference_l1_equals_the_autograd_formula(shape):
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(shape, generator=g, dtype=torch.float64).softmax(-1)
    maps[:, :, 0, 0] = maps[:, :1, 0, 0]  # some exact ties: |0| and its subgradient 0 must agree too
    maps.requires_grad_(True)
    ours, plain = frame_difference_l1(maps), plain_frame_difference(maps)
    torch.testing.assert_close(ours, plain, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads(2.5 * ours, [maps])[0], grads(2.5 * plain, [maps])[0], rtol=1e-12, atol=1e-12)


def test_trs_recording_matches_sdpa_and_the_autograd_formula(tiny):
    model = build_model(tiny)
    names = spatial_attention_names(model.unet, "attn1", decoder_only=True)
    params = model.trainable_parameters()
    g = torch.Generator().manual_seed(0)
    x, text = torch.randn(2, 4, 4, 8, 8, generator=g), torch.randn(2, 77, 16, generator=g)
    results = []
    for recorder_cls in (PlainTRSRecorder, TRSRecorder):
        with recording(model.unet, names, recorder_cls(names, 4)) as rec:
            eps = model(x, torch.tensor([10, 700]), text)
        loss = eps.square().mean() + rec.loss()
        results.append((eps.detach(), rec.loss().detach(), grads(loss, params)))
    (eps0, trs0, g0), (eps1, trs1, g1) = results
    torch.testing.assert_close(eps1, eps0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(trs1, trs0, rtol=1e-5, atol=1e-7)
    assert trs1 > 0 and any(g is not None and g.abs().sum() > 0 for g in g1)
    assert_close_grads(g1, g0)


def test_low_rank_mapping_attention_equals_the_diffusers_processor():
    torch.manual_seed(0)
    m = MappingNetwork(channels=4, hidden_channels=8, heads=8, head_dim=64)  # the appendix's 8 heads × 64
    assert isinstance(m.temporal_attn.processor, LowRankSelfAttnProcessor)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))  # trained-like: every branch acts
    x = torch.randn(2, 4, 6, 5, 3, requires_grad=True)
    params = [x, *m.parameters()]
    y = m(x)
    g = grads((y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum(), params)
    m.temporal_attn.set_processor(AttnProcessor2_0())
    y_ref = m(x)
    g_ref = grads((y_ref * torch.linspace(-1, 1, y.numel()).view_as(y)).sum(), params)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    assert_close_grads(g, g_ref, rtol=1e-4, atol=1e-5)
    # wide inputs keep diffusers' own processor (there the low-rank form would not be cheaper)
    wide = MappingNetwork(channels=8, hidden_channels=8, heads=2, head_dim=8)
    assert isinstance(wide.temporal_attn.processor, AttnProcessor2_0)


@pytest.mark.parametrize("channels, kernel, padding, shape", [
    ((64, 4), 3, 1, (1, 16, 6, 5)),  # the mapping network's output convolution
    ((3, 5), (3, 1, 3), (1, 0, 1), (2, 4, 3, 6)),  # uneven kernel and padding, batch 2
    ((2, 3), 3, 0, (1, 5, 4, 4)),  # no padding: fewer output frames
])
def test_conv3d_by_frames_equals_conv3d_with_gradients(channels, kernel, padding, shape):
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(*channels, kernel, padding=padding)
    b, f, h, w = shape
    x = torch.randn(b, channels[0], f, h, w, requires_grad=True)
    params = [x, *conv.parameters()]
    y = conv3d_by_frames(conv, x)
    weights = torch.linspace(-1, 1, y.numel()).view_as(y)
    y_ref = conv(x)
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    assert_close_grads(grads((y * weights).sum(), params), grads((y_ref * weights).sum(), params), rtol=1e-4, atol=1e-5)


def test_training_step_maps_once_like_two_mapping_passes(tiny):
    """Both branches of Eq. 2 take M(x_t) from one mapping pass; loss and gradients equal two passes."""
    model = build_model(tiny)
    with torch.no_grad():
        for p in model.mapping_network.parameters():
            p.add_(0.05 * torch.randn_like(p))  # a trained mapping network, not the identity
    ddim_only = ("set_alpha_to_one", "clip_sample")
    sched = DDPMScheduler(**{k: v for k, v in scheduler_config().items() if k not in ddim_only})
    T = sched.config.num_train_timesteps
    g = torch.Generator().manual_seed(3)
    latents, text = torch.randn(2, 4, 4, 8, 8, generator=g), torch.randn(2, 77, 16, generator=g)
    params = model.trainable_parameters()
    cfg = LossConfig(use_trs=False, use_dc=False)
    out = training_step(model, latents, text, sched, cfg, generator=torch.Generator().manual_seed(0))
    g_ours = grads(out.loss, params)

    gen = torch.Generator().manual_seed(0)  # the same draws as training_step
    noise = torch.randn(latents.shape, generator=gen)
    t = torch.randint(0, T, (2,), generator=gen)
    noisy = sched.add_noise(latents, noise, t)
    eps_video = model(noisy, t, text)  # mapping inside each call, as before
    eps_t2i = model(noisy, t, text, use_motion=False, use_frame_tokens=False)
    plain = simple_loss(eps_video, noise) + cfg.reg_weight * reg_loss(eps_video, eps_t2i, t, T)
    torch.testing.assert_close(out.loss, plain, rtol=1e-6, atol=1e-7)
    g_plain = grads(plain, params)
    assert any(g is not None and g.abs().sum() > 0 for g in g_ours[: len(params)])
    assert_close_grads(g_ours, g_plain)


def test_capture_computes_only_the_recorded_rows(tiny):
    model = build_model(tiny)
    names = spatial_attention_names(model.unet, "attn2")

    class Keep:
        def __init__(self, rows=None):
            self.rows, self.maps = rows, []

        def record(self, name, probs):
            self.maps.append(probs)

    x, text = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 77, 16)
    with torch.no_grad():
        with recording(model.unet, names, Keep()) as every:
            out_all = model(x, 10, text)
        with recording(model.unet, names, Keep(rows=3)) as last:  # the last video's 3 frames
            out_last = model(x, 10, text)
    assert torch.equal(out_all, out_last)  # the output never depends on what is recorded
    for a, b in zip(every.maps, last.maps):
        assert b.shape[0] == 3
        torch.testing.assert_close(b, a[-3:], rtol=1e-6, atol=1e-7)
