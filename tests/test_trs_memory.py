"""Memory-efficient L_TRS (issue 7): `TRSAttentionFunction` computes the same output, L_TRS term and gradients as
the map-keeping path (softmax → probs @ V, `frame_difference_l1`), and saves far fewer bytes for backward."""

import pytest
import torch
from diffusers import DDPMScheduler

from harivo.attention import recording, spatial_attention_names
from harivo.config import LossConfig
from harivo.train.losses import NegativeQueue, training_step
from harivo.tiny import scheduler_config
from harivo.train.trs import TRSRecorder, frame_difference_l1, trs_attention

from conftest import build_model


def kept_maps_attention(q, k, v, f):
    """The map-keeping path of `RecordingAttnProcessor` + `TRSRecorder`: (probs @ v, Σ_j mean|A^(j) − A^(j−1)|)."""
    probs = ((q / q.shape[-1] ** 0.5) @ k.transpose(-1, -2)).softmax(-1)  # (b f, heads, q, k)
    maps = probs.reshape(probs.shape[0] // f, f, *probs.shape[1:])  # (b, f, heads, q, k)
    return probs.to(v.dtype) @ v, frame_difference_l1(maps)


def random_qkv(b, f, heads, n, d, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [(2 * torch.randn(b * f, heads, n, d, generator=g, dtype=dtype)).requires_grad_(True) for _ in range(3)]


@pytest.mark.parametrize("f", [3, 4])
@pytest.mark.parametrize("chunk_size", [5, 16])
def test_chunked_trs_attention_equals_the_kept_maps(f, chunk_size):
    q, k, v = random_qkv(b=2, f=f, heads=2, n=16, d=8)
    r = torch.randn(q.shape, generator=torch.Generator().manual_seed(1), dtype=q.dtype)
    c = 3.7  # the upstream weight of the term (λ_i · λ_TRS in training)
    out0, term0 = kept_maps_attention(q, k, v, f)
    out1, term1 = trs_attention(q, k, v, f, chunk_size)
    torch.testing.assert_close(out1, out0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(term1, term0, rtol=1e-12, atol=1e-12)
    g0 = torch.autograd.grad((out0 * r).sum() + c * term0, [q, k, v], retain_graph=True)
    g1 = torch.autograd.grad((out1 * r).sum() + c * term1, [q, k, v], retain_graph=True)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # the term alone (no output gradient) and the output alone (no term gradient)
    for weights in ((0.0, 1.0), (1.0, 0.0)):
        g0 = torch.autograd.grad(weights[0] * (out0 * r).sum() + weights[1] * term0, [q, k, v], retain_graph=True)
        g1 = torch.autograd.grad(weights[0] * (out1 * r).sum() + weights[1] * term1, [q, k, v], retain_graph=True)
        for a, b in zip(g1, g0):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_chunked_trs_attention_float32_and_gradcheck():
    q, k, v = random_qkv(b=1, f=3, heads=1, n=6, d=4, seed=2)
    torch.autograd.gradcheck(lambda q, k, v: trs_attention(q, k, v, 3, 4), (q, k, v))
    q32, k32, v32 = (t.detach().float() for t in random_qkv(b=2, f=3, heads=2, n=16, d=8, seed=3))
    out0, term0 = kept_maps_attention(q32, k32, v32, 3)
    out1, term1 = trs_attention(q32, k32, v32, 3, 5)
    assert out1.dtype == torch.float32 and term1.dtype == torch.float32
    torch.testing.assert_close(out1, out0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(term1, term0, rtol=1e-5, atol=1e-7)


def test_trs_attention_rejects_bad_arguments():
    q, k, v = random_qkv(b=1, f=3, heads=1, n=4, d=4)
    with pytest.raises(ValueError, match="q:"):
        trs_attention(q, k, v, 2, 4)
    with pytest.raises(ValueError, match="chunk_size"):
        trs_attention(q, k, v, 3, 0)
    with pytest.raises(ValueError, match="trs_chunk_size"):
        LossConfig(trs_chunk_size=-1).validate()


def saved_bytes(fn) -> int:
    """Bytes of every tensor autograd saves for backward while `fn` runs (each storage counted once)."""
    seen, total = set(), 0

    def pack(t):
        nonlocal total
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def test_chunked_trs_saves_much_less_for_backward():
    q, k, v = random_qkv(b=1, f=4, heads=2, n=256, d=8, dtype=torch.float32)
    kept = saved_bytes(lambda: kept_maps_attention(q, k, v, 4))
    chunked = saved_bytes(lambda: trs_attention(q, k, v, 4, 32))
    maps = 4 * 2 * 256 * 256 * 4  # one float32 map per frame and head
    assert kept >= maps  # softmax keeps its output (the maps)
    assert chunked == 3 * q.numel() * 4  # just q, k, v
    assert chunked / kept < 0.25, (chunked, kept)


def run_step(model, head, cfg):
    queue = NegativeQueue(cfg.dc_queue_size, head.channels)
    sched = DDPMScheduler(**{k: v for k, v in scheduler_config().items() if k not in ("set_alpha_to_one", "clip_sample")})
    g = torch.Generator().manual_seed(0)
    latents, text = torch.randn(2, 4, 4, 8, 8, generator=g), torch.randn(2, 77, 16, generator=g)
    out = training_step(model, latents, text, sched, cfg, head, queue, torch.Generator().manual_seed(0))
    params = model.trainable_parameters() + list(head.parameters())
    return out.terms, torch.autograd.grad(out.loss, params, allow_unused=True)


def test_training_step_with_chunked_trs_equals_kept_maps(tiny):
    model = build_model(tiny)
    head = model.make_projection_head()
    terms0, grads0 = run_step(model, head, LossConfig())
    terms1, grads1 = run_step(model, head, LossConfig(trs_chunk_size=7))
    assert terms1.keys() == terms0.keys() and terms0["trs"] > 0
    for name in terms0:
        assert terms1[name] == pytest.approx(terms0[name], rel=1e-5, abs=1e-7), name
    assert any(g is not None and g.abs().sum() > 0 for g in grads1)
    for a, b in zip(grads1, grads0):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert not any(type(p).__name__ == "RecordingAttnProcessor" for p in model.unet.attn_processors.values())


def test_chunked_recorder_never_gets_maps(tiny):
    model = build_model(tiny)
    names = spatial_attention_names(model.unet, "attn1", decoder_only=True)

    class NoMaps(TRSRecorder):
        def record(self, name, probs):
            raise AssertionError("the chunked path must not hand over maps")

    with recording(model.unet, names, NoMaps(names, 4, chunk_size=16)) as rec:
        model(torch.randn(1, 4, 4, 8, 8), 10, torch.randn(1, 77, 16))
    assert set(rec.terms) == set(names)
    assert rec.loss().requires_grad
